"""Drop-in layers: same arguments, parameter names and outputs as torch.nn's; and the
variants torch.nn lacks."""

from rnnkit.nn.cells import GRUCell, LSTMCell, RNNCell, RNNCellBase
from rnnkit.nn.convlstm import ConvGRU, ConvGRUCell, ConvLSTM, ConvLSTMCell
from rnnkit.nn.layers import (
    GRU,
    LSTM,
    RNN,
    CarryLSTM,
    LayerNormGRU,
    LayerNormLSTM,
    layer_class,
)
from rnnkit.nn.minimal import MinGRU, MinGRUCell, MinLSTM, MinLSTMCell, MinRNNBase
from rnnkit.nn.rnn import RNNBase
from rnnkit.nn.stepping import Stream

__all__ = ["GRU", "LSTM", "RNN", "CarryLSTM", "ConvGRU", "ConvGRUCell", "ConvLSTM", "ConvLSTMCell", "GRUCell", "LSTMCell", "LayerNormGRU",
           "LayerNormLSTM", "MinGRU", "MinGRUCell", "MinLSTM", "MinLSTMCell", "MinRNNBase",
           "RNNBase", "RNNCell", "RNNCellBase", "Stream", "layer_class"]
