"""Learning from feedback: the SDPO loss and step, the self-teacher, the Learner (one training copy
of the model), the background trainer, the promotion gate, solve's task adapter, the credit view's numbers."""
