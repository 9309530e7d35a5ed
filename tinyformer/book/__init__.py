"""The book's machinery: what chapters use to *show* the model, never imported by the library.

    page          glue that also shows in a notebook; the trained model, with progress when not cached
    build_env     where a chapter runs: inside the book build or in a reader's notebook
    claims        statements about computed results, checked when the chapter runs
    walkthrough   the running example: one tiny input carried from tokens to the next token,
                  every intermediate tensor by name, checked against the model's own forward pass
    diagrams      data-flow pictures drawn from the modules themselves (forward hooks), with alt text
    export        the trained model to ONNX (logits and every layer's attention) for the playground page
    plots         the book's figures, in one style
    hooks         one forward-hook recorder: every submodule call, its inputs and outputs (diagrams, walkthrough)
    profiling     speed and memory measurements for the benchmarks and "Making it fast"
    demo_training the one short training loop of the small demos below
    reversal      the reversal task that trains the encoder-decoder (Encoder vs decoder vs decoder-only)
    masked_vs_causal  the masked-LM experiment: a bidirectional encoder against a causal model

The library (``tinyformer.layers``, ``attention``, ``model``, ...) never imports from here, so a
reader who opens ``tinyformer/`` sees the model first.
"""
