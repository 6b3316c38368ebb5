"""rnnkit: recurrent neural networks on PyTorch, from the equations to fused kernels."""
from rnnkit.clip import clip_grad_norm
from rnnkit.layers import (GRU, LSTM, QRNN, RNN, SRU, GRUCell, IndRNN, LSTMCell, MinGRU,
                           MinLSTM, RNNCell)

__all__ = ["RNN", "LSTM", "GRU", "IndRNN", "SRU", "QRNN", "MinGRU", "MinLSTM", "RNNCell",
           "LSTMCell", "GRUCell", "clip_grad_norm"]
__version__ = "0.1.0"
