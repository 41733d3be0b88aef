import CkptCLI

Ckpt.runMain()
