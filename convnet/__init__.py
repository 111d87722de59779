"""LeNet-style convolutional network trained with hand-written backpropagation."""
