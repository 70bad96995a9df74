"""Small shared kernels at the bottom of the layers: Arrow text helpers, CSV bytes, parallel slices, frame files, the atomic writer."""
