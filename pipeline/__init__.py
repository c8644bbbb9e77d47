"""Working-alliance analysis pipeline."""
