import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402
import torch  # noqa: E402

from tinyformer.book import intuition, plots  # noqa: E402
from tinyformer.book.diagrams import min_font_px  # noqa: E402


def test_total_variation_hand_computed_values():
    p = torch.tensor([0.5, 0.5, 0.0])
    assert intuition.total_variation(p, p).item() == 0.0
    assert intuition.total_variation(p, torch.tensor([0.0, 0.0, 1.0])).item() == 1.0  # disjoint
    # |0.5 - 0.2| + |0.5 - 0.3| + |0 - 0.5| = 1.0, halved
    assert intuition.total_variation(p, torch.tensor([0.2, 0.3, 0.5])).item() == pytest.approx(0.5)


def test_total_variation_broadcasts_over_every_pair():
    rows = torch.softmax(torch.randn(5, 3, 7, generator=torch.Generator().manual_seed(0)), -1)
    pairs = intuition.total_variation(rows[:, None], rows[None])
    assert pairs.shape == (5, 5, 3)
    assert torch.allclose(pairs, pairs.transpose(0, 1))
    assert torch.equal(pairs[2, 4], intuition.total_variation(rows[2], rows[4]))


def test_total_variation_refuses_rows_of_different_lengths():
    with pytest.raises(ValueError, match="same length"):
        intuition.total_variation(torch.ones(3) / 3, torch.ones(4) / 4)


def test_qk_plane_shadows_end_on_the_query_line():
    q, keys = torch.tensor([-1.0, 0.5]), torch.tensor([[2.0, 1.0], [0.3, -0.4], [-0.5, 0.2]])
    fig = intuition.qk_plane_figure(q, keys, ["a", "b", "c"])
    dotted = [line for line in fig.axes[0].lines if line.get_linestyle() == ":"]
    assert len(dotted) == 3
    unit = q.numpy() / np.linalg.norm(q.numpy())
    for line, k in zip(dotted, keys.numpy()):
        (x0, x1), (y0, y1) = line.get_xdata(), line.get_ydata()
        assert (x0, y0) == pytest.approx(tuple(k))  # starts at the key's tip
        assert x1 * unit[1] - y1 * unit[0] == pytest.approx(0, abs=1e-6)  # ends on the query's line
        assert x1 * unit[0] + y1 * unit[1] == pytest.approx(float(k @ unit))  # at the key's shadow
    plt.close(fig)
    with pytest.raises(ValueError, match="2-D vectors"):
        intuition.qk_plane_figure(torch.ones(3), keys, ["a", "b", "c"])
    with pytest.raises(ValueError, match="labels"):
        intuition.qk_plane_figure(q, keys, ["a", "b"])


FIGURES = {
    "qk_plane": lambda: intuition.qk_plane_figure(torch.tensor([1.0, 0.2]), torch.randn(4, 2), list("abcd")),
    "temperature": lambda: intuition.temperature_figure({"÷ √1": [0.7, 0.3], "÷ √8": [0.6, 0.4]}, ["a", "b"]),
    "context_rows": lambda: intuition.context_rows_figure(torch.softmax(torch.randn(2, 16), -1),
                                                          ["abcdefghijklmnop", "ponmlkjihgfedcba"], ["one", "two"]),
}


@pytest.mark.parametrize("name", sorted(FIGURES))
def test_figures_fit_a_phone(name):
    fig = FIGURES[name]()
    assert fig.get_figwidth() <= plots.WIDTH + 1e-6
    fig.canvas.draw()
    assert min_font_px(fig, 390) >= 9.5  # 10 pt on a 5 in figure shown 390 px wide
    plt.close(fig)


def test_context_rows_marks_the_reading_character_and_checks_its_input():
    fig = intuition.context_rows_figure(torch.full((2, 3), 1 / 3), ["ab ", "cde"], ["one", "two"])
    for ax, text in zip(fig.axes, ["ab␣", "cde"]):
        labels = ax.get_xticklabels()
        assert [t.get_text() for t in labels] == list(text)
        assert labels[-1].get_color() == plots.ORANGE
    plt.close(fig)
    with pytest.raises(ValueError, match="3 characters"):
        intuition.context_rows_figure(torch.full((2, 3), 1 / 3), ["ab", "cde"], ["one", "two"])
    with pytest.raises(ValueError, match="one row, one context and one title"):
        intuition.context_rows_figure(torch.full((2, 3), 1 / 3), ["abc", "cde"], ["one"])
