"""The canonical stock model, its validation, and how exports change stock."""
