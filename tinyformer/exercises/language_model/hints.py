"""The classic mistakes of chapter "The full language model", each a wrong implementation the
checker recognises by its outputs, with the hint it prints."""

from ..component import Mistakes
from .solution import TransformerLM

MISTAKES = Mistakes()


@MISTAKES.add(
    "TransformerLM", "no final norm before the LM head",
    hint="pre-norm blocks leave the residual stream unnormalised: apply final_norm before lm_head",
)
class TransformerLMNoFinalNorm(TransformerLM):
    """Feeds the last block's output straight into lm_head, skipping final_norm."""

    def forward(self, token_ids):
        x = self.token_embedding(token_ids) + self.positions[: token_ids.shape[1]]
        for block in self.blocks:
            x = block(x)
        return self.lm_head(x)


@MISTAKES.add(
    "TransformerLM", "positions not added",
    hint="add sinusoidal_positions(...)[:T] to the token embeddings",
)
class TransformerLMNoPositions(TransformerLM):
    """Forgets to add the positions: the model cannot tell word order."""

    def forward(self, token_ids):
        x = self.token_embedding(token_ids)
        for block in self.blocks:
            x = block(x)
        return self.lm_head(self.final_norm(x))


# The mistake the book's page shows: (component, wrong implementation).
CLASSIC = ("TransformerLM", TransformerLMNoFinalNorm)
