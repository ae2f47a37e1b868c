"""Drop-in layers: same arguments, parameter names and outputs as torch.nn's."""

from rnnkit.nn.cells import GRUCell, LSTMCell, RNNCell, RNNCellBase
from rnnkit.nn.rnn import GRU, LSTM, RNN, RNNBase

__all__ = ["GRU", "LSTM", "RNN", "GRUCell", "LSTMCell", "RNNBase", "RNNCell", "RNNCellBase"]
