"""SR architectures of the model zoo, keeping the official repositories' state_dict layouts."""
