"""One module per pipeline stage. Each has VERSION, params(recipe, persona), inputs(recipe, persona)
and run(ctx); the runner (localchar/runner.py) keys, skips and resumes them."""
