"""CITATION.cff is valid CFF 1.2.0, and the book cites the papers it rests on."""

import json
import re
from pathlib import Path

import jsonschema
import yaml

ROOT = Path(__file__).resolve().parent.parent


def test_citation_cff_is_valid_cff_1_2_0():
    schema = json.loads((ROOT / "tests" / "data" / "cff-1.2.0-schema.json").read_text())
    # CFF dates are YAML dates; the schema validates them as strings.
    cff = yaml.load((ROOT / "CITATION.cff").read_text(), Loader=yaml.BaseLoader)
    jsonschema.validate(cff, schema)
    assert cff["cff-version"] == "1.2.0"


def test_citation_cff_rejects_a_broken_file():
    schema = json.loads((ROOT / "tests" / "data" / "cff-1.2.0-schema.json").read_text())
    cff = yaml.load((ROOT / "CITATION.cff").read_text(), Loader=yaml.BaseLoader)
    del cff["authors"]
    try:
        jsonschema.validate(cff, schema)
    except jsonschema.ValidationError as exc:
        assert "authors" in exc.message
    else:
        raise AssertionError("a CFF file without authors validated")


def test_bibliography_has_the_papers_and_the_reading_list():
    keys = set(re.findall(r"@\w+\{([^,]+),", (ROOT / "book" / "references.bib").read_text()))
    papers = {"vaswani2017attention", "su2024roformer", "zhang2019rmsnorm", "shazeer2020glu", "sennrich2016bpe",
              "radford2019gpt2", "devlin2019bert", "raffel2020t5"}
    reading_list = {"rush2018annotated", "alammar2018illustrated", "cho2024explainer", "riedl2023walkthrough",
                    "wikipedia2025transformer", "raschka2024build", "alammar2024handson", "3b1b2024transformers"}
    assert papers | reading_list <= keys
    cited = set()
    for chapter in (ROOT / "book").glob("*.md"):
        for group in re.findall(r"\{cite:[pt]\}`([^`]+)`", chapter.read_text()):
            cited.update(k.strip() for k in group.split(","))
    assert cited <= keys, f"cited but not in references.bib: {cited - keys}"
    assert papers <= cited, f"papers never cited: {papers - cited}"
