import matplotlib

matplotlib.use("Agg")

import pytest  # noqa: E402
import torch  # noqa: E402

from tinyformer.book import plots  # noqa: E402
from tinyformer.positions import sinusoidal_positional_encoding  # noqa: E402

FIGURES = {
    "attention_heatmap": lambda: plots.attention_heatmap(torch.softmax(torch.randn(4, 4), -1), list("abcd")),
    "attention_heatmap_long": lambda: plots.attention_heatmap(torch.softmax(torch.randn(20, 20), -1), list("abcdefghijklmnopqrst")),
    "attention_heads": lambda: plots.attention_heads(torch.softmax(torch.randn(4, 6, 6), -1), list("abcdef")),
    "attention_heads_grid": lambda: plots.attention_heads(torch.rand(16, 8, 8), ncols=4),
    "mask_figure": lambda: plots.mask_figure(torch.tril(torch.ones(4, 4)).bool(), list("abcd")),
    "pe_heatmap": lambda: plots.positional_encoding_heatmap(sinusoidal_positional_encoding(32, 16)),
    "pe_curves": lambda: plots.positional_encoding_curves(sinusoidal_positional_encoding(32, 16)),
    "rope_rotation": lambda: plots.rope_rotation_figure([1.0, 0.1], range(4)),
    "rope_relative": lambda: plots.rope_relative_figure(torch.randn(8, 8)),
    "softmax_temperature": lambda: plots.softmax_temperature_figure({0.5: [0.7, 0.3], 1.0: [0.6, 0.4]}, ["a", "b"]),
    "norm_comparison": lambda: plots.norm_comparison_figure(torch.arange(4.0), torch.zeros(4), torch.ones(4)),
    "loss_curves": lambda: plots.loss_curves({"step": [1, 2], "train_loss": [3, 2], "val_step": [2], "val_loss": [2.5]}, {"bigram": 2.4}),
    "bar_figure": lambda: plots.bar_figure({"a": 1.0, "b": 2.0}, "value", horizontal=True),
    "line_figure": lambda: plots.line_figure([1, 2, 4], {"x": [1, 2, 3]}, "n", "y", logx=True),
}


@pytest.mark.parametrize("name", sorted(FIGURES))
def test_figures_fit_a_phone(name):
    plots.use_book_style()
    fig = FIGURES[name]()
    width, height = fig.get_size_inches()
    assert width <= plots.WIDTH + 1e-6  # 5 in at 144 dpi: text stays ~12 px on a 390 px screen
    assert fig.dpi >= 144
    assert matplotlib.rcParams["font.size"] >= 12
    fig.canvas.draw()
    matplotlib.pyplot.close(fig)
