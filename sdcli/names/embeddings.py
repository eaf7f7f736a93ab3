"""Textual-inversion embeddings in a prompt: which ones it uses, and which words almost name one.

An embedding is used by writing its name as a word of the prompt (`EasyNegative` in the
negative prompt), so, unlike `<lora:NAME>`, an unknown name is just a word and never an error.
The web UI finds an embedding by its name's CLIP tokens (textual_inversion.py
`find_embedding_at_position`): the tokenizer lowers the case and cuts the text into runs of
letters, single digits and runs of other signs, so `easynegative` uses `EasyNegative` while
`easy_negative` or `EasyNegativ` are plain words. Matching here cuts text the same way.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

from sdcli.datatypes import frozen
from sdcli.names.lookup import did_you_mean, fold

if TYPE_CHECKING:
    from sdcli.catalog import Catalog

# Patterns are kept as text: `re` compiles (and caches) each at first use, not at start-up.
# CLIP's pre-tokenizer: letters, one digit, other signs (`_` counts as a sign, as in CLIP).
_PIECES = r"[^\W\d_]+|\d|(?:[^\w\s]|_)+"
# What never reaches the tokenizer as text: <lora:…> and other extra networks' tags, the
# attention syntax's brackets and weights (prompt_parser.parse_prompt_attention).
_NOT_TEXT = r"<[^<>]*>|:\s*-?\d+(?:\.\d+)?\s*(?=[)\]])|[()\[\]]"
# A word of the prompt, as a person writes one: between spaces, commas and brackets.
_WORD = r"[^\s,()\[\]{}|<>]+"
_SIMILAR = 0.85  # how close a word must be to a name to be taken for a misspelling of it


@frozen
class NearMiss:
    """A word of the prompt that almost names an embedding, and is therefore a plain word."""

    word: str
    name: str
    same_letters: bool  # the same name with other separators (the web UI needs them as written)


def pieces(text: str) -> list[str]:
    """`text` as the tokenizer's pre-tokens, lower case: "EasyNegative," -> easynegative, ","."""
    return re.findall(_PIECES, text.lower())


def embeddings_used(prompts: Iterable[str], names: Sequence[str]) -> list[str]:
    """The embeddings the prompts use, as the web UI finds them: a name's pieces in a row."""
    cut = [_pieces_of_prompt(prompt) for prompt in prompts]
    used = []
    for name in names:
        wanted = pieces(name)
        if wanted and any(_contains(found, wanted) for found in cut):
            used.append(name)
    return used


def near_misses(prompts: Iterable[str], names: Sequence[str]) -> list[NearMiss]:
    """Words that name no embedding but almost name one: the same letters with other
    separators (`easy_negative` for `EasyNegative`), or a misspelling of a word that looks like
    a name rather than English (a digit, `_`, or a capital inside: `EasyNegativ`). Ordinary
    words are never taken for a misspelling, however close: a prompt is mostly ordinary words."""
    folded = {fold(name): name for name in names}
    misses: dict[str, NearMiss] = {}
    for prompt in prompts:
        for word in _words(prompt):
            if word in misses or not fold(word) or embeddings_used([word], names):
                continue
            same = folded.get(fold(word))
            if same is not None:
                misses[word] = NearMiss(word, same, True)
            elif _looks_like_a_name(word):
                close = did_you_mean(word, names, n=1, cutoff=_SIMILAR, holding=False)
                if close:
                    misses[word] = NearMiss(word, close[0], False)
    return list(misses.values())


def embedding_warnings(
    body: Mapping[str, Any], catalog: Catalog, *, model_given: bool = False
) -> list[str]:
    """What to say before sending `body`: a word that almost names an embedding, and an
    embedding the loaded model skips (the server silently reads it as plain words). With a
    per-request model (`model_given`) the server's skipped list, made for the loaded model, may
    not hold for the request's, and is not consulted. The server is asked only when a word
    looks like a name (a digit, `_`, a capital inside: most embeddings' names do), so a prompt
    of plain words costs no request; a server that cannot list embeddings gives no warnings."""
    prompts = {
        "prompt": str(body.get("prompt") or ""),
        "negative prompt": str(body.get("negative_prompt") or ""),
    }
    if not worth_asking(prompts.values()):
        return []
    names = catalog.embeddings()
    if not names:
        return []
    warnings = []
    for where, prompt in prompts.items():
        for miss in near_misses([prompt], names):
            why = (
                "the web UI matches an embedding by its name as written, case aside"
                if miss.same_letters
                else "did you mean it?"
            )
            warnings.append(
                f"{miss.word!r} in the {where} names no embedding, so the server reads it as "
                f"plain words; the embedding is {miss.name!r} ({why})"
            )
    used = embeddings_used(prompts.values(), names)
    if used and not model_given:
        skipped = set(catalog.skipped_embeddings())
        warnings += [
            f"the server skips the embedding {name!r} for the loaded model (it was made for "
            "another architecture): the prompt's words read as plain words"
            for name in used
            if name in skipped
        ]
    return warnings


def worth_asking(prompts: Iterable[str]) -> bool:
    """Whether the prompts have a word that looks like an embedding's name: only then is the
    server asked for its embeddings (`embedding_warnings`)."""
    return any(_looks_like_a_name(w) for p in prompts for w in _words(p))


def _words(prompt: str) -> list[str]:
    return [word.strip(".:;!?'\"") for word in re.findall(_WORD, re.sub(_NOT_TEXT, " ", prompt))]


def _pieces_of_prompt(prompt: str) -> list[str]:
    return pieces(re.sub(_NOT_TEXT, " ", prompt))


def _contains(found: Sequence[str], wanted: Sequence[str]) -> bool:
    n = len(wanted)
    return any(list(found[i : i + n]) == list(wanted) for i in range(len(found) - n + 1))


def _looks_like_a_name(word: str) -> bool:
    if len(word) < 5:
        return False
    inner_capital = any(ch.isupper() for ch in word[1:]) and not word.isupper()
    return inner_capital or "_" in word or any(ch.isdigit() for ch in word)
