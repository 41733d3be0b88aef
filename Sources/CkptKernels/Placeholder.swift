// placeholder until the forward engine lands (issue 3)
enum CkptKernelsPlaceholder {}
