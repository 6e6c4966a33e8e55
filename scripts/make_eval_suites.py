"""Generate the shipped offline eval suite "core" (stdlib only, deterministic byte for byte).

    python scripts/make_eval_suites.py            # rewrite harness/quality/evals/core/
    python scripts/make_eval_suites.py --check    # regenerate in a temp dir; exit 1 on drift
    python scripts/make_eval_suites.py --out DIR  # write somewhere else

Every slice draws from its own ``random.Random(SEED + offset)``; items are written as JSONL with
sorted keys and ``\\n`` line ends. Items cycle through their strata (steps, depth x size, template)
by index, so any prefix -- the "smoke" level takes the first N -- covers every stratum.
Haystack sizes of ``long_context`` are in characters (the CPU model has a small context); sizes in
tokens are checked later with the model's own tokenizer.
Format history of manifest.json: version "1" -- first release.
"""

from __future__ import annotations

import argparse
import datetime
import filecmp
import hashlib
import json
import random
import re
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

SUITE, VERSION, SEED, ITEMS_PER_SLICE = "core", "1", 20250105, 200
DEFAULT_OUT = Path(__file__).resolve().parents[1] / "harness" / "quality" / "evals" / SUITE
TEXT_CHARS = 40_000  # corpus.txt and calibration.txt are each at least this long

Item = dict[str, Any]
Rng = random.Random

PEOPLE = (
    ("Maya", "she"),
    ("Omar", "he"),
    ("Lena", "she"),
    ("Tariq", "he"),
    ("Ines", "she"),
    ("Bruno", "he"),
    ("Keiko", "she"),
    ("Samuel", "he"),
    ("Priya", "she"),
    ("Jonas", "he"),
)
THINGS = ("marbles", "stickers", "apples", "pencils", "stamps", "shells", "cards", "buttons")
FIRST = ("Maria", "David", "Aisha", "Chen", "Olga", "Pedro", "Fatima", "Liam", "Yuki", "Noah")
LAST = ("Lopez", "Smith", "Okafor", "Wang", "Ivanova", "Silva", "Haddad", "Murphy", "Sato", "Berg")
PRODUCTS = ("notebook", "stapler", "lamp", "kettle", "backpack", "umbrella", "mug", "charger")
ORDER_STATUS = ("pending", "shipped", "delivered", "cancelled")
PLANS = ("basic", "standard", "premium")
LANGUAGES = ("English", "Spanish", "French", "German", "Arabic", "Hindi", "Japanese")
TOPICS = (
    "the history of bicycles",
    "why people keep houseplants",
    "a rainy afternoon",
    "the life of a lighthouse keeper",
    "learning to swim",
    "the moon",
    "public libraries",
    "a busy train station",
    "how bread rises",
    "winter birds",
    "mountain trails",
    "the first day at a new school",
    "street markets",
    "paper maps",
    "honeybees",
)
INCLUDE_WORDS = ("river", "lantern", "garden", "copper", "meadow", "signal")
EXCLUDE_WORDS = ("very", "really", "thing", "nice", "good")
END_PHRASES = (
    "Is there anything else I can help with?",
    "That is all for today.",
    "Thank you for reading.",
)
CONFLICTS = (("wrap_json", "wrap_quotes"), ("word_count_min", "word_count_max"))
WRAP_CONFLICTS = ("end_phrase", "bullets", "title")
CONSTRAINT_TYPES = (
    "no_comma",
    "lowercase",
    "word_count_min",
    "word_count_max",
    "include_word",
    "exclude_word",
    "end_phrase",
    "bullets",
    "wrap_json",
    "wrap_quotes",
    "title",
)
FILLER = (
    "The grass is green.",
    "The sky is blue.",
    "The sun is yellow.",
    "Here we go.",
    "There and back again.",
)
KEY_ADJ = ("silent", "amber", "hollow", "brisk", "velvet", "distant", "crimson", "gentle")
KEY_NOUN = ("harbor", "falcon", "orchard", "compass", "glacier", "lantern", "meadow", "anvil")
DEPTHS = (0.1, 0.5, 0.9)
HAYSTACK_CHARS = (1000, 2000, 4000)
CAPITALS = (
    ("France", "Paris"),
    ("Japan", "Tokyo"),
    ("Egypt", "Cairo"),
    ("Canada", "Ottawa"),
    ("Kenya", "Nairobi"),
    ("Peru", "Lima"),
    ("Norway", "Oslo"),
    ("Italy", "Rome"),
    ("Spain", "Madrid"),
    ("Chile", "Santiago"),
    ("Greece", "Athens"),
    ("Cuba", "Havana"),
    ("Poland", "Warsaw"),
    ("Ireland", "Dublin"),
    ("Thailand", "Bangkok"),
)
UNITS = (
    ("centimeters", "meters", 100),
    ("grams", "kilograms", 1000),
    ("minutes", "hours", 60),
    ("seconds", "minutes", 60),
    ("millimeters", "centimeters", 10),
)

# Held-out eval corpus (perplexity, KLD): towns, rivers, weather and trade.
CORPUS = {
    "town": ("Merrow", "Ashby", "Kellford", "Dunmore", "Valeport", "Brightwater", "Holloway"),
    "river": ("Tamsin", "Orrel", "Bexley", "Caddon", "Wyre"),
    "good": ("wool", "salt", "cheese", "timber", "honey", "linen", "pottery", "dried fish"),
    "season": ("spring", "summer", "autumn", "winter"),
    "year": tuple(str(y) for y in range(1712, 1901, 7)),
    "job": ("ferrymen", "weavers", "millers", "clerks", "coopers", "schoolteachers"),
    "place": ("the old bridge", "the chapel on the hill", "the covered market", "the toll house"),
    "weather": (
        "fog rolls in from the marshes",
        "the wind turns cold and dry",
        "long rains swell the streams",
        "the evenings stay light until late",
    ),
}
CORPUS_TEMPLATES = (
    "{town} grew up around a shallow ford on the {river}, where drovers once crossed with cattle.",
    "By {year} the town had a weekly fair, and merchants came from far away to buy {good}.",
    "Most families in {town} worked as {job} or kept small plots behind their cottages.",
    "In {season}, {weather}, and the lanes near {place} turn quiet before dusk.",
    "Visitors often remark that {place} looks older than the records suggest.",
    "A flood in {year} carried away half of the wharf, and it took a decade to rebuild it.",
    "The {river} is slow and brown here, and herons stand in the reeds along its banks.",
    "Local accounts say the {job} of {town} refused to pay a new tax on {good} in {year}.",
    "Today the streets around {place} are lined with bakeries, a bookshop and a small museum.",
    "When the railway arrived, trade in {good} moved north, and {town} slowly shrank.",
    "Older residents still measure distance by how long it takes to walk to {place}.",
    "Each {season} the council repaints the signs, though nobody can agree on the colours.",
    "The parish register lists twelve {job} in {year}, and by the next census only three.",
    "On market days the square smells of {good} and wet stone.",
    "Children learn the names of the bends in the {river} before they learn to read.",
    "Few maps from before {year} show {town} at all, which puzzles local historians.",
)
# Calibration text (quantization): workshops, kitchens and orchards; different lists and templates.
CALIB = {
    "tool": ("chisel", "hand plane", "spokeshave", "mallet", "marking gauge", "coping saw"),
    "wood": ("walnut", "ash", "cherry", "oak", "maple", "pine"),
    "dish": ("lentil soup", "barley stew", "plum tart", "flatbread", "onion pie"),
    "fruit": ("quinces", "pears", "damsons", "apricots", "medlars"),
    "crew": ("apprentices", "cooks", "pickers", "joiners", "gardeners"),
    "hour": ("first light", "midmorning", "noon", "late afternoon", "evening"),
    "tend": ("sharpen", "oil", "clean", "hone"),
    "chore": ("sweep", "sort", "dust", "clear"),
}
CALIB_TEMPLATES = (
    "Before you start, {tend} the {tool} and check that the bench is level.",
    "A {tool} works best on {wood} when the grain runs away from you.",
    "The {crew} usually gather at {hour} to decide what needs doing first.",
    "Simmer the {dish} gently so that nothing catches on the bottom of the pan.",
    "Ripe {fruit} bruise easily, so pickers lay them in shallow crates lined with straw.",
    "If the {wood} feels damp, leave it under cover for another week before cutting.",
    "Good {crew} tidy as they go and never leave a {tool} lying on the floor.",
    "Serve the {dish} with a sharp cheese and a handful of toasted seeds.",
    "By {hour} the orchard is warm and the wasps find the fallen {fruit}.",
    "Mark every joint in pencil, then cut slightly outside the line with the {tool}.",
    "Our grandmother made {dish} every Friday and wrote nothing down.",
    "Prune the trees that bear {fruit} in the dry weeks, never in heavy frost.",
    "It is easier to {chore} the shelves before the {crew} bring in the new stock.",
    "Glue the {wood} panels in pairs and clamp them until the next morning.",
)


def jsonl(items: list[Item]) -> bytes:
    lines = [json.dumps(item, sort_keys=True, ensure_ascii=False) + "\n" for item in items]
    return "".join(lines).encode("utf-8")


def make_items(slice_name: str, rng: Rng, build: Callable[[Rng, int], Item]) -> list[Item]:
    return [
        {"id": f"{slice_name}-{i:04d}", "slice": slice_name, **build(rng, i)}
        for i in range(ITEMS_PER_SLICE)
    ]


# ----- arithmetic -------------------------------------------------------------------------------


def word_step(rng: Rng, value: int, thing: str, pro: str) -> tuple[str, int]:
    kind = rng.choice(("add", "sub", "groups", "times", "share"))
    if kind == "sub" and value > 4:
        x = rng.randint(1, value - 1)
        return f"{pro} gives {x} {thing} to a friend.", value - x
    if kind == "groups":
        k, x = rng.randint(2, 6), rng.randint(2, 12)
        return f"{pro} buys {k} bags with {x} {thing} in each bag.", value + k * x
    if kind == "times" and value <= 300:
        k = rng.choice((2, 3))
        word = {2: "twice", 3: "three times"}[k]
        return f"Later, {pro.lower()} ends up with {word} as many {thing}.", value * k
    divisors = [k for k in (2, 3, 4, 5) if value % k == 0]
    if kind == "share" and divisors:
        k = rng.choice(divisors)
        return f"{pro} splits the {thing} equally into {k} boxes and keeps one box.", value // k
    x = rng.randint(3, 40)
    return f"{pro} then finds {x} more {thing}.", value + x


def word_problem(rng: Rng, steps: int) -> tuple[str, int]:
    name, pronoun = rng.choice(PEOPLE)
    thing = rng.choice(THINGS)
    value = rng.randint(5, 60)
    sentences = [f"{name} has {value} {thing}."]
    for _ in range(steps):
        sentence, value = word_step(rng, value, thing, pronoun.capitalize())
        sentences.append(sentence)
    sentences.append(f"How many {thing} does {name} have now?")
    return " ".join(sentences), value


def expression(rng: Rng, steps: int) -> tuple[str, int]:
    value = rng.randint(2, 50)
    text = str(value)
    for step in range(steps):
        op = rng.choice(("+", "-", "*")) if value <= 200 else rng.choice(("+", "-"))
        x = rng.randint(2, 9) if op == "*" else rng.randint(1, 60 if op == "+" else value)
        value = {"+": value + x, "-": value - x, "*": value * x}[op]
        text = f"({text} {op} {x})" if step < steps - 1 else f"{text} {op} {x}"
    return f"Compute {text}.", value


def arithmetic(rng: Rng, i: int) -> Item:
    steps = 2 + i % 3
    form = "word" if i % 2 == 0 else "expression"
    question, answer = (word_problem if form == "word" else expression)(rng, steps)
    prompt = (
        "Solve the following problem. Think step by step, then give the final answer on its own "
        f'line in the form "#### <number>".\n\nProblem: {question}\nSolution:'
    )
    return {"prompt": prompt, "answer": answer, "steps": steps, "form": form}


# ----- json -------------------------------------------------------------------------------------


def iso_date(rng: Rng) -> str:
    start = datetime.date(2018, 1, 1).toordinal()
    return datetime.date.fromordinal(start + rng.randint(0, 2555)).isoformat()


def object_schema(properties: dict[str, Any]) -> dict[str, Any]:
    required = list(properties)
    return {
        "type": "object",
        "required": required,
        "properties": properties,
        "additionalProperties": False,
    }


def order_record(rng: Rng) -> tuple[dict[str, Any], dict[str, Any], str]:
    products = rng.sample(PRODUCTS, rng.randint(1, 3))
    lines = [{"product": p, "quantity": rng.randint(1, 9)} for p in products]
    rec = {
        "customer": f"{rng.choice(FIRST)} {rng.choice(LAST)}",
        "order_date": iso_date(rng),
        "total": rng.randint(100, 99999) / 100,
        "status": rng.choice(ORDER_STATUS),
        "items": lines,
    }
    line = {"product": {"type": "string"}, "quantity": {"type": "integer"}}
    schema = object_schema(
        {
            "customer": {"type": "string"},
            "order_date": {"type": "string", "format": "date"},
            "total": {"type": "number"},
            "status": {"type": "string", "enum": list(ORDER_STATUS)},
            "items": {"type": "array", "items": object_schema(line)},
        }
    )
    contents = " and ".join(f"{x['quantity']} x {x['product']}" for x in lines)
    prose = (
        f"{rec['customer']} placed an order on {rec['order_date']}. It contains {contents}, "
        f"for a total of {rec['total']:.2f} dollars. The order is {rec['status']}."
    )
    return rec, schema, prose


def member_record(rng: Rng) -> tuple[dict[str, Any], dict[str, Any], str]:
    langs = rng.sample(LANGUAGES, rng.randint(1, 3))
    rec = {
        "name": f"{rng.choice(FIRST)} {rng.choice(LAST)}",
        "birth_date": iso_date(rng),
        "height_m": rng.randint(150, 199) / 100,
        "plan": rng.choice(PLANS),
        "languages": langs,
    }
    schema = object_schema(
        {
            "name": {"type": "string"},
            "birth_date": {"type": "string", "format": "date"},
            "height_m": {"type": "number"},
            "plan": {"type": "string", "enum": list(PLANS)},
            "languages": {"type": "array", "items": {"type": "string", "enum": list(LANGUAGES)}},
        }
    )
    prose = (
        f"Our new member {rec['name']} was born on {rec['birth_date']} and is "
        f"{rec['height_m']:.2f} meters tall. They chose the {rec['plan']} plan and speak "
        f"{' and '.join(langs)}."
    )
    return rec, schema, prose


def json_item(rng: Rng, i: int) -> Item:
    kind = ("order", "member")[i % 2]
    rec, schema, prose = (order_record if kind == "order" else member_record)(rng)
    prompt = (
        "Extract the record described below as one JSON object that follows this JSON schema. "
        f"Output only the JSON.\n\nSchema: {json.dumps(schema)}\n\nText: {prose}\n\nJSON:"
    )
    return {"prompt": prompt, "expected": rec, "schema": schema, "record_type": kind}


# ----- instructions -----------------------------------------------------------------------------


def constraint(rng: Rng, kind: str) -> tuple[dict[str, Any], str]:
    if kind in ("word_count_min", "word_count_max"):
        n = rng.choice((30, 50, 80) if kind == "word_count_min" else (40, 60, 100))
        rel = "at least" if kind == "word_count_min" else "at most"
        return {"type": kind, "n": n}, f"Answer with {rel} {n} words."
    if kind in ("include_word", "exclude_word"):
        word = rng.choice(INCLUDE_WORDS if kind == "include_word" else EXCLUDE_WORDS)
        verb = "Include" if kind == "include_word" else "Do not use"
        return {"type": kind, "word": word}, f'{verb} the word "{word}" in your response.'
    if kind == "end_phrase":
        p = rng.choice(END_PHRASES)
        return {"type": kind, "phrase": p}, f'End your response with the exact phrase "{p}".'
    if kind == "bullets":
        n = rng.choice((2, 3, 4))
        text = f"Your answer must contain exactly {n} bullet points in markdown format, like: * a"
        return {"type": kind, "n": n}, text + " point."
    return {"type": kind}, {
        "no_comma": "Do not use any commas in your response.",
        "lowercase": "Your entire response must be in lowercase letters.",
        "wrap_json": "Wrap your entire output in JSON format.",
        "wrap_quotes": "Wrap your entire response in double quotation marks.",
        "title": "Give your answer a title wrapped in double angular brackets, like <<my title>>.",
    }[kind]


def compatible(a: str, b: str) -> bool:
    pairs = [*CONFLICTS, *((w, c) for w in ("wrap_json", "wrap_quotes") for c in WRAP_CONFLICTS)]
    return a != b and (a, b) not in pairs and (b, a) not in pairs


def instructions(rng: Rng, i: int) -> Item:
    kinds = [CONSTRAINT_TYPES[i % len(CONSTRAINT_TYPES)]]
    if i % 2 == 1:
        kinds.append(rng.choice([k for k in CONSTRAINT_TYPES if compatible(kinds[0], k)]))
    specs, texts = zip(*(constraint(rng, k) for k in kinds), strict=True)
    prompt = f"Write a short piece about {rng.choice(TOPICS)}. {' '.join(texts)}"
    return {"prompt": prompt, "constraints": list(specs)}


# ----- long_context -----------------------------------------------------------------------------


def long_context(rng: Rng, i: int) -> Item:
    depth, size = DEPTHS[i % 3], HAYSTACK_CHARS[(i // 3) % 3]
    key = f"{rng.choice(KEY_ADJ)}-{rng.choice(KEY_NOUN)}-{rng.randint(10, 99)}"
    value = str(rng.randint(1_000_000, 9_999_999))
    sentences = [FILLER[j % len(FILLER)] for j in range(size // 16)]
    sentences.insert(
        round(depth * len(sentences)), f"The special magic number for {key} is {value}."
    )
    haystack = " ".join(sentences)
    prompt = (
        "Some special magic numbers are hidden within the following text. Make sure to memorize "
        f"them. I will quiz you about the numbers afterwards.\n{haystack}\nWhat is the special "
        f"magic number for {key} mentioned in the provided text? The special magic number for "
        f"{key} mentioned in the provided text is"
    )
    return {
        "prompt": prompt,
        "answers": [value],
        "key": key,
        "depth": depth,
        "haystack_chars": size,
        "context_chars": len(haystack),
    }


# ----- multiple_choice --------------------------------------------------------------------------


def mc_options(rng: Rng, answer: str, distractors: list[str]) -> tuple[list[str], int]:
    unique = [d for d in dict.fromkeys(distractors) if d != answer]
    choices = [answer, *rng.sample(unique, 3)]
    rng.shuffle(choices)
    return choices, choices.index(answer)


def mc_question(rng: Rng, kind: str) -> tuple[str, str, list[str]]:
    if kind == "arithmetic":
        a, b = rng.randint(11, 99), rng.randint(11, 99)
        s = a + b
        return f"What is {a} + {b}?", str(s), [str(s + d) for d in (-10, -2, -1, 1, 2, 10)]
    if kind == "capital":
        country, city = rng.choice(CAPITALS)
        return f"What is the capital of {country}?", city, [c for _, c in CAPITALS]
    small, big, factor = rng.choice(UNITS)
    n = rng.randint(2, 9)
    wrong = [n * factor * 10, n * factor // 10 or n, n * factor + factor, n + factor]
    return f"How many {small} are in {n} {big}?", str(n * factor), [str(w) for w in wrong]


def multiple_choice(rng: Rng, i: int) -> Item:
    kind = ("arithmetic", "capital", "unit")[i % 3]
    question, answer, distractors = mc_question(rng, kind)
    choices, index = mc_options(rng, answer, distractors)
    return {
        "prompt": f"Question: {question}\nAnswer:",
        "choices": choices,
        "answer": index,
        "continuation_prefix": " ",
        "template": kind,
    }


# ----- text corpora -----------------------------------------------------------------------------


def fill(rng: Rng, template: str, words: dict[str, tuple[str, ...]], fixed: dict[str, str]) -> str:
    return re.sub(r"\{(\w+)\}", lambda m: fixed.get(m[1]) or rng.choice(words[m[1]]), template)


def prose(rng: Rng, words: dict[str, tuple[str, ...]], templates: tuple[str, ...], key: str) -> str:
    paragraphs: list[str] = []
    while sum(len(p) + 2 for p in paragraphs) < TEXT_CHARS:
        fixed = {key: rng.choice(words[key])}
        picked = rng.sample(templates, rng.randint(4, 6))
        paragraphs.append(" ".join(fill(rng, t, words, fixed) for t in picked))
    return "\n\n".join(paragraphs) + "\n"


# ----- output -----------------------------------------------------------------------------------

SLICES: tuple[tuple[str, Callable[[Rng, int], Item]], ...] = (
    ("arithmetic", arithmetic),
    ("json", json_item),
    ("instructions", instructions),
    ("long_context", long_context),
    ("multiple_choice", multiple_choice),
)


def build_files() -> dict[str, tuple[bytes, dict[str, Any]]]:
    files: dict[str, tuple[bytes, dict[str, Any]]] = {}
    for offset, (name, build) in enumerate(SLICES):
        items = make_items(name, random.Random(SEED + offset), build)
        meta = {"kind": "items", "items": len(items), "seed": SEED + offset, "slices": [name]}
        files[f"{name}.jsonl"] = (jsonl(items), meta)
    texts = (
        ("corpus", CORPUS, CORPUS_TEMPLATES, "town"),
        ("calibration", CALIB, CALIB_TEMPLATES, "crew"),
    )
    for offset, (name, words, templates, key) in enumerate(texts, start=100):
        data = prose(random.Random(SEED + offset), words, templates, key).encode("utf-8")
        files[f"{name}.txt"] = (
            data,
            {"kind": name, "chars": len(data), "seed": SEED + offset, "slices": []},
        )
    return files


def write_suite(out: Path) -> None:
    out.mkdir(parents=True, exist_ok=True)
    entries: dict[str, Any] = {}
    for fname, (data, meta) in build_files().items():
        (out / fname).write_bytes(data)
        entries[fname] = {**meta, "sha256": hashlib.sha256(data).hexdigest()}
    manifest = {
        "suite": SUITE,
        "version": VERSION,
        "seed": SEED,
        "files": entries,
        "slices": [name for name, _ in SLICES],
        "generator": "scripts/make_eval_suites.py",
    }
    (out / "manifest.json").write_bytes(
        (json.dumps(manifest, indent=2, sort_keys=True) + "\n").encode()
    )


def check(shipped: Path) -> int:
    with tempfile.TemporaryDirectory() as tmp:
        write_suite(Path(tmp))
        cmp = filecmp.dircmp(tmp, shipped)
        names = sorted(p.name for p in Path(tmp).iterdir())
        _, mismatch, errors = filecmp.cmpfiles(tmp, shipped, names, shallow=False)
        differing = sorted([*mismatch, *errors, *cmp.right_only])
    if differing:
        print(f"eval suite {shipped} differs from the generator: {', '.join(differing)}")
        return 1
    print(f"eval suite {shipped} matches the generator ({len(names)} files)")
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, help="suite directory")
    parser.add_argument("--check", action="store_true", help="compare instead of writing")
    args = parser.parse_args(argv)
    if args.check:
        return check(args.out)
    write_suite(args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
