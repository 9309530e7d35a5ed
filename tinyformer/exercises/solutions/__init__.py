"""Reference solutions to the exercises, one module per chapter.

They mirror the starter files that ``python -m tinyformer.exercises init DIR``
writes, with every ``raise NotImplementedError`` replaced by a working body.
The book injects them into its "Your turn" cells, e.g.::

    from tinyformer.exercises.solutions.attention import softmax
    check(softmax, "softmax")

Read them after you have tried: the checker tells you *whether* your version is
right; these show one way to write it.
"""
