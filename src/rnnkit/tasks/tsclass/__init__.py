"""Classification of feature sequences of varying length (``rnnkit train tsclass``): the
speakers of the Japanese vowels, or a dataset of the UEA & UCR archive's ``.ts`` format.

:mod:`.options` declares the command line (no torch); :mod:`.task` is the implementation.
"""
