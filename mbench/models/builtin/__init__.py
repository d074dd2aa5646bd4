"""Built-in model plugins, one module per family; imported only when a model is built."""
