"""Speech recognition: a convolutional and recurrent acoustic model trained with CTC on
recorded speech (``rnnkit train asr``), transcribing audio files (``rnnkit transcribe``).

:mod:`.options` declares the command line (no torch); :mod:`.task` is the implementation,
imported when a run starts.
"""
