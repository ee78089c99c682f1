"""Gates on generated instructions, checked before any judging (docs/method.md §11).

The backward model's failures are not rare on real pages: it echoes its own prompt ("What is the most
likely question to which the text below would be a great answer?"), talks about asking instead of asking
("the most likely question to ask about the aurora borealis?"), stacks several questions, copies the
response or lifts a statement from it, or repeats itself. A judge can rate such a pair highly (the
response may be a good text), and IFD rewards a copy most of all, so these are caught by rule first: each
gate names a `skipped` reason in scored.jsonl, and a gated row is never judged or selected.

Every rule is about what a person's request looks like, not about any one page; each gate is switchable
(`curate.gates`). Legitimate instructions of every style pass: imperatives ("Write a short guide..."),
questions with context ("I'm visiting Kyoto in April. What should I see?"), two related parts ("What is
X, and how do I apply it?"), and questions whose topic is questions ("What questions should I ask a
landlord?").
"""

from __future__ import annotations

import re
import zlib

GATES = (
    "no_content",
    "copy",
    "echo",
    "meta",
    "stacked",
    "repetition",
    "not_request",
)  # checked in this order

_WORD = re.compile(r"[^\W_]+(?:['’][^\W_]+)?", re.UNICODE)

# Chat-template tokens anywhere, or a role label opening the instruction: the backward model writing a
# conversation or a template, not a request.
_TEMPLATE = re.compile(
    r"<\|[a-z_]+\|>|\[/?INST\]|<</?SYS>>|</?s>|^#{2,}\s*(system|user|assistant|instruction|response)\b"
    r"|\A\s*(system|user|assistant|human|instruction|response|question|output)\s*:",
    re.IGNORECASE | re.MULTILINE,
)
# The backward prompt's own wording (src/humback/prompts.py BACKWARD_PROMPT) coming back out.
_PROMPT_ECHO = re.compile(
    r"candidate answer|would be a (great|good) answer|to which the (text|passage|answer)"
    r"|in the style of an ai assistant|question or instruction from an? user",
    re.IGNORECASE,
)
# Talking about a question or instruction instead of asking one. "What questions should I ask a landlord?"
# asks for questions as its topic and passes: the cues are the backward task's own framing.
_META = re.compile(
    r"\b(most likely|likely|probable|possible|best|good|great|appropriate|suitable)\s+(question|instruction"
    r"|query|prompt)s?"
    r"\s+(to ask|to which|that (the|this)|for which|would|could|for (this|the|that) (text|passage|answer"
    r"|response|article))"
    r"|\b(question|instruction|query|prompt)s?\s+(to which|that (the|this) (text|passage|answer)|would (be"
    r"|have) (answered|produced))"
    r"|\b(what|how) (would|might|will|does|do) the user\b|\bthe user('s)? (question|request|instruction)\b"
    r"|\b(the|this) answer to (the|this) question\b|\bhow to answer\b\s*[:?]"
    r"|^(write|generate|create|formulate|produce|come up with|suggest|give)\s+(me\s+)?(a|an|the|one)\s+"
    r"(question|instruction|query|prompt)\s+"
    r"(for|to which|that|about (this|the) (text|passage|answer))",
    re.IGNORECASE | re.MULTILINE,
)
# "the text" with nothing attached: a generated instruction never carries the text it would refer to. Only
# for short instructions (a long one usually brings its context along).
_DANGLING = re.compile(
    r"\b(according to|based on|in|from|of|about|summari[sz]e|with)\s+(the|this|that)\s+(given\s+|above\s+"
    r"|following\s+)?"
    r"(text|passage|excerpt|article|paragraph)\b(?!\s+(file|editor|message|box|field|format|in|of|to)\b)"
    r"|\b(the|this|given|above|following|provided)\s+(text|passage|excerpt|article|paragraph)\s*(above|below|provided|given)?"
    r"\s*(says|describes|discusses|mentions|explains|is about)\b"
    r"|\b(according to|did|does|do) the (author|writer|narrator)\b(?!\s+of\b)"
    r"|\bthe (author|writer|narrator) (say|says|said|think|thinks|mean|means|argue|argues|suggest|suggests"
    r"|claim|claims)\b",
    re.IGNORECASE,
)
# A request: a question, an imperative, or one of the ways people phrase a need without either.
_QUESTION_START = {
    "what",
    "how",
    "why",
    "when",
    "where",
    "who",
    "whom",
    "which",
    "whose",
    "is",
    "are",
    "am",
    "was",
    "were",
    "can",
    "could",
    "do",
    "does",
    "did",
    "should",
    "would",
    "will",
    "shall",
    "may",
    "might",
    "has",
    "have",
    "had",
    "must",
    "isn't",
    "aren't",
    "can't",
    "don't",
    "doesn't",
    "won't",
}
_IMPERATIVE = {
    "write",
    "list",
    "explain",
    "describe",
    "give",
    "tell",
    "summarize",
    "summarise",
    "create",
    "make",
    "generate",
    "compare",
    "suggest",
    "provide",
    "help",
    "show",
    "find",
    "translate",
    "rewrite",
    "draft",
    "design",
    "outline",
    "recommend",
    "name",
    "identify",
    "calculate",
    "define",
    "discuss",
    "plan",
    "compose",
    "prepare",
    "build",
    "convert",
    "classify",
    "analyze",
    "analyse",
    "evaluate",
    "propose",
    "teach",
    "share",
    "develop",
    "brainstorm",
    "paraphrase",
    "edit",
    "correct",
    "fix",
    "solve",
    "implement",
    "code",
    "draw",
    "elaborate",
    "clarify",
    "interpret",
    "predict",
    "estimate",
    "determine",
    "rank",
    "sort",
    "choose",
    "pick",
    "select",
    "imagine",
    "pretend",
    "act",
    "play",
    "assume",
    "consider",
    "review",
    "critique",
    "proofread",
    "arrange",
    "organize",
    "organise",
    "format",
    "extract",
    "argue",
    "justify",
    "prove",
    "derive",
    "simplify",
    "expand",
    "shorten",
    "improve",
    "optimize",
    "debug",
    "check",
    "verify",
    "complete",
    "continue",
    "add",
    "remove",
    "replace",
    "change",
    "turn",
    "use",
    "apply",
    "introduce",
    "invent",
    "produce",
    "reply",
    "respond",
    "answer",
    "state",
    "present",
    "illustrate",
    "demonstrate",
    "walk",
    "guide",
    "break",
    "start",
    "try",
    "compile",
    "research",
    "investigate",
    "explore",
    "examine",
    "assess",
    "convince",
    "persuade",
    "remind",
    "advise",
    "craft",
    "plot",
    "schedule",
    "categorize",
    "categorise",
    "rate",
    "take",
    "phrase",
    "need",
    "come",
    "think",
    "read",
    "curate",
    "publish",
    "be",
    "do",
    "get",
    "reword",
    "detail",
    "highlight",
    "mention",
    "offer",
    "recite",
    "sketch",
    "tweet",
    "email",
    "cite",
    "quote",
    "spell",
    "count",
    "match",
    "group",
    "label",
    "ask",
    "repeat",
    "copy",
    "paste",
    "print",
    "indicate",
    "enter",
    "include",
    "decide",
    "structure",
    "look",
    "search",
    "discover",
    "learn",
    "practice",
    "say",
    "greet",
    "thank",
    "wish",
}
_REQUEST_CUE = re.compile(
    r"\?|\b(can|could|would|will) you\b|\bplease\b|\bi(['’]d| would) (like|love|appreciate)\b|\bi (want|need"
    r"|wish)\b"
    r"|\bi(['’]m| am) (looking|trying|wondering|curious|interested|planning|struggling|hoping|stuck)\b"
    r"|\bhelp me\b|\blet me know\b|\blet(['’]s| us)\b|\bi wonder\b|\bany (tips|ideas|advice|suggestions"
    r"|recommendations)\b"
    r"|\byou (need|should|must|have|are going|are asked|are required|will|can|could) (to )?\w+|\bhow to\b"
    r"|\b(should|must|needs? to|has to|have to) be \w+(ed|en)\b|\bif you (could|can|would)\b"
    r"|^(ideas|tips|ways|steps|examples|names|reasons|suggestions) (for|to|of|on)\b",
    re.IGNORECASE,
)
# A sentence that opens with its subject and goes on to its verb ("The correct answer is: ...").
_STATEMENT = re.compile(
    r"\W*(the|this|that|these|those|it|there|they|he|she|we|our|my|its|their|a|an)\b[^?]*?"
    r"\b(is|are|was|were|has|have|had|will|can|does|do)\b",
    re.IGNORECASE,
)
_CLAUSE = re.compile(r"[.!?;:\n]+\s*|,\s+")
_LIST_MARK = re.compile(r"^[ \t]*(\d+[.)]|[-*•])[ \t]+", re.MULTILINE)
_SENTENCE_END = re.compile(r"(?<=[.!?])\s+|\n+")


def words(text: str) -> list[str]:
    return [w.lower() for w in _WORD.findall(text)]


def shared(instruction: str, response: str, n: int = 4) -> tuple[float, float]:
    """How much of each side lies in word n-grams both share: (share of the instruction's words, share of
    the response's words). A copy is (1.0, 1.0); "Repeat this text: <the first half>" about (0.8, 0.5); an
    answer that restates its question ("If the Beatles had never formed, ...") shares much of the question
    but little of itself. Instructions shorter than n words compare their whole word sequence."""
    iw, rw = words(instruction), words(response)
    if not iw or not rw:
        return 0.0, 0.0
    k = min(n, len(iw), len(rw))
    common = {tuple(iw[i : i + k]) for i in range(len(iw) - k + 1)} & {
        tuple(rw[i : i + k]) for i in range(len(rw) - k + 1)
    }

    def covered(ws: list[str]) -> float:
        hit = [False] * len(ws)
        for i in range(len(ws) - k + 1):
            if tuple(ws[i : i + k]) in common:
                hit[i : i + k] = [True] * k
        return round(sum(hit) / len(ws), 4)

    return covered(iw), covered(rw)


def overlap(instruction: str, response: str) -> float:
    """The share of the response that the instruction reproduces (0..1): the `overlap` signal. 1.0 for a
    copy, about 0.5 for "Repeat this text: <the first half>", a few percent when an answer restates its
    question. IFD rewards it (nothing predicts a response better than the response), so the score is
    discounted by it (scoring.py) and a fitted combination can weigh it."""
    return shared(instruction, response)[1]


def _is_request(text: str) -> bool:
    """A question, an imperative, a stated need, or a search-like phrase ("ideas for a waitlist"); not a
    statement (a sentence that ends with a full stop or runs to several sentences, and asks nothing)."""
    if _REQUEST_CUE.search(text):
        return True
    for clause in _CLAUSE.split(text.strip()):
        w = words(clause)
        while w and w[0] in (
            "please",
            "kindly",
            "now",
            "then",
            "also",
            "and",
            "so",
            "first",
            "next",
            "finally",
            "hi",
            "hello",
            "hey",
        ):
            w = w[1:]
        if w and (w[0] in _IMPERATIVE or w[0] in _QUESTION_START):
            return True
    sentences = [x for x in _SENTENCE_END.split(text.strip()) if words(x)]
    return not (text.rstrip().endswith((".", "!", ":")) or len(sentences) >= 2 or _STATEMENT.match(text))


def _stacked(text: str) -> bool:
    """Several requests stacked: three or more questions making up most of the instruction, or three or
    more lines that are each a request of their own (a question or an imperative) making up most of its
    lines. One request with its context, or two related parts ("What is X, and how do I apply it?"),
    passes."""
    text = _LIST_MARK.sub("", text)
    sentences = [s for s in _SENTENCE_END.split(text.strip()) if words(s)]
    questions = [
        s
        for s in sentences
        if s.rstrip().endswith("?") or (words(s)[0] in _QUESTION_START and not s.rstrip().endswith("."))
    ]
    if len(questions) >= 3 and len(questions) >= 0.6 * len(sentences) and len(words(text)) <= 80:
        return True
    if re.search(r"\n\s*\n", text.strip()):
        return False  # a blank line sets a request apart from the text it is about
    lines = [line for line in text.splitlines() if words(line)]
    asks = [line for line in lines if len(words(line)) <= 60 and _is_request(line)]
    return len(asks) >= 3 and len(asks) >= 0.75 * len(lines)


def gate(instruction: str, response: str, enabled: tuple[str, ...] = GATES) -> str | None:
    """The first gate (in GATES order) that `instruction` fails, or None. An empty instruction is left to
    the caller (its own reason, `empty_instruction`)."""
    text = instruction.strip()
    w = words(text)
    on = set(enabled)
    if "no_content" in on and (sum(c.isalpha() for c in text) < 2 or not [x for x in w if not x.isdigit()]):
        return "no_content"
    if "copy" in on and _copy(w, words(response), text, response):
        return "copy"
    if "echo" in on and (_TEMPLATE.search(text) or _PROMPT_ECHO.search(text)):
        return "echo"
    if "meta" in on and (_META.search(text) or (len(w) <= 40 and _DANGLING.search(text))):
        return "meta"
    if "stacked" in on and _stacked(text):
        return "stacked"
    if "repetition" in on and _degenerate(text, w):
        return "repetition"
    if "not_request" in on and not _is_request(text):
        return "not_request"
    return None


LONG_RESPONSE = 50  # words
# A request to reproduce text ("Repeat this text:", "Copy the following"): with the response's own text
# after it, the pair teaches copying.
_REPRODUCE = re.compile(
    r"\W*(please\s+)?(repeat|copy|echo|reproduce|recite|retype|transcribe)\b", re.IGNORECASE
)


def _copy(iw: list[str], rw: list[str], instruction: str, response: str) -> bool:
    """The instruction reproduces its response: equal to it, or, for a response of LONG_RESPONSE words or more
    (web segments are 600+ characters; a short answer may well quote its instruction), containing it, or
    with 70 % of its own words (10 or more) in 4-grams of the response that cover a quarter of the response
    ("Repeat this text: <its first half>"). An answer that restates its question covers little of itself."""
    if not iw or not rw:
        return False
    ni, nr = " ".join(iw), " ".join(rw)
    if ni == nr or (len(rw) >= LONG_RESPONSE and nr in ni):
        return True
    if _REPRODUCE.match(instruction) and shared(instruction, response)[1] >= 0.25:
        return True  # "Repeat this text: <a part of the response>", whatever the response's length
    if len(iw) < 10 or len(rw) < LONG_RESPONSE:
        return False
    of_instruction, of_response = shared(instruction, response)
    return of_instruction >= 0.7 and of_response >= 0.25


def _degenerate(text: str, w: list[str]) -> bool:
    """A run of one word four times, or a long text that compresses to a fraction of itself."""
    if any(w[i] == w[i + 1] == w[i + 2] == w[i + 3] for i in range(len(w) - 3)):
        return True
    raw = text.encode("utf-8")
    return len(raw) >= 200 and len(zlib.compress(raw)) / len(raw) < 0.25
