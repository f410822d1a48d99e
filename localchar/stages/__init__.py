"""One module per pipeline stage. Each has VERSION, params(recipe, persona), inputs(recipe, persona)
and run(ctx), and may have enabled(recipe) (an optional stage, planned only when it says True);
the runner (localchar/runner.py) keys, skips and resumes them."""
