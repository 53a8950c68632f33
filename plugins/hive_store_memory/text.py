"""Text processing of the memory plugin: clustering terms, Hive's topic hierarchy, follow-up
rules and the quoting of user text into FTS5 queries.

Everything here is pure and deterministic (no I/O, no randomness, no locale dependence).
"""

from __future__ import annotations

import functools
import itertools
import re
from collections import Counter
from collections.abc import Iterable, Sequence

import attrs

from hive_store.entities import ThreadType

# -- terms (for TF-IDF) ---------------------------------------------------------------------------

_WORD = re.compile(r"[^\W_]+(?:['\u2019][^\W_]+)*")

STOPWORDS = frozenset("""
a about above after again against all almost also although always am among an and another any
anybody anyhow anyone anything anyway anywhere are aren around as ask asked asking at away be
became because become becomes been before began behind being below beside besides best better
between beyond both brief but by came can cannot cant could couldn did didn different do does
doesn doing don done down during each either else enough especially etc even ever every
everyone everything example examples except far few find first five for four from further get
gets getting give given gives go goes going gone good got great had hadn has hasn have haven
having he her here hers herself him himself his how however i ie if in instead into is isn it
its itself just keep know known last least less let lets like likely made main make makes many
may maybe me mean means might mine more most mostly much must my myself need needs never new
next no nobody none nor not nothing now of off often oh ok okay on once one ones only onto or
other others otherwise our ours ourselves out over own per perhaps please possible probably put
quite rather really regarding right said same say says second see seem seemed seems several
shall she should shouldn show shown since so some somebody someone something sometimes somewhat
soon still such sure take tell than thank thanks that the their theirs them themselves then
there therefore these they thing things think third this those though three through thus to
together too took toward towards tried tries truly try trying twice two under until up upon us
use used useful uses using usually very via want wants was wasn way ways we well went were
weren what whatever when whenever where whereas whether which while who whoever whole whom
whose why will with within without won would wouldn yes yet you your yours yourself yourselves
""".split())  # noqa: SIM905 - a word list reads best as text

# Words whose final "s" is not a plural.
_KEEP_S = frozenset({"kubernetes", "postgres", "redis", "aws", "ios", "macos", "https", "dns",
                     "css", "sass", "less", "news", "series", "species", "chaos", "lens", "gas",
                     "bias", "alias", "atlas", "canvas", "corpus", "status", "analysis", "basis",
                     "axis", "thesis", "virus", "bonus", "focus", "consensus", "nexus", "plus",
                     "windows", "jenkins", "pandas", "numpy", "express", "rails"})


def _stem(word: str) -> str:
    """A light, predictable plural folding (``queries`` → ``query``, ``databases`` →
    ``database``); real stemming is left to the FTS5 porter tokenizer."""
    if word in _KEEP_S or len(word) <= 3:
        return word
    if word.endswith("ies") and len(word) > 4:
        return word[:-3] + "y"
    if word.endswith("sses"):
        return word[:-2]
    if word.endswith("s") and not word.endswith(("ss", "us", "is", "'s")):
        return word[:-1]
    return word


@functools.lru_cache(maxsize=1 << 17)
def _term(word: str) -> str | None:
    word = word.replace("\u2019", "'")
    if word.endswith("'s"):
        word = word[:-2]
    if len(word) < 3 or word in STOPWORDS or word.isdigit() or "'" in word:
        return None
    return _stem(word)


def term_of(word: str) -> str | None:
    """The clustering term of one word (lower-cased, plural folded), or ``None`` for a stop
    word, a number or a word shorter than three characters."""
    return _term(word.lower())


def terms(text: str) -> list[str]:
    """The content terms of ``text`` in order: lower-cased words of three or more characters,
    not stop words, not bare numbers, plurals folded."""
    out: list[str] = []
    for word in _WORD.findall(text.lower()):
        term = _term(word)
        if term is not None:
            out.append(term)
    return out


def term_counts(title: str, body: str, *, title_weight: int = 2) -> Counter[str]:
    """Term frequencies of a knowledge entry: the question's terms count ``title_weight``
    times (the question says what the entry is about), the answer's once."""
    counts: Counter[str] = Counter()
    for term in terms(title):
        counts[term] += title_weight
    counts.update(terms(body))
    return counts


# -- Hive's topic hierarchy -----------------------------------------------------------------------


@attrs.frozen
class TopicRoot:
    """One root of the hierarchy: its related terms and its subtopics' terms."""

    name: str
    related: frozenset[str]
    subtopics: tuple[tuple[str, frozenset[str]], ...]


def _root(name: str, related: str, **subtopics: str) -> TopicRoot:
    return TopicRoot(name, frozenset(related.split()),
                     tuple((sub, frozenset(words.split())) for sub, words in subtopics.items()))


# The six roots of Hive's topic_extraction.rs (artificial_intelligence, programming, data,
# blockchain, security, cloud_computing) with subtopics; topics are written as ``root`` or
# ``root:subtopic``. The term lists are ours (the notes name the roots, not their terms); a
# multi-word term is matched as consecutive words, after the same folding as :func:`terms`.
TOPIC_HIERARCHY: tuple[TopicRoot, ...] = (
    _root("artificial_intelligence",
          "ai artificial_intelligence machine_learning neural_network llm gpt claude "
          "embedding transformer inference prompt",
          machine_learning="machine_learning training dataset classifier regression "
                           "gradient overfitting",
          deep_learning="neural_network deep_learning transformer attention cnn rnn "
                        "backpropagation",
          nlp="nlp language_model llm tokenizer embedding prompt text_generation gpt claude",
          computer_vision="computer_vision image vision object_detection segmentation"),
    _root("programming",
          "programming code function class method compiler interpreter library framework "
          "debug refactor async python rust javascript typescript java golang "
          "kotlin swift",
          python="python pip django flask fastapi pytest asyncio",
          rust="rust cargo borrow_checker tokio lifetime trait",
          javascript="javascript typescript node npm react vue deno",
          web_development="html css http rest frontend backend browser react vue",
          testing="test testing pytest unit_test integration_test mock coverage"),
    _root("data",
          "data database sql query index schema sqlite postgres postgresql mysql "
          "analytics etl warehouse pandas dataframe csv",
          databases="database sql sqlite postgres postgresql mysql index transaction "
                    "wal migration schema query",
          analytics="analytics dashboard metric statistic visualization pandas",
          data_engineering="etl pipeline warehouse spark kafka stream batch"),
    _root("blockchain",
          "blockchain crypto cryptocurrency bitcoin ethereum smart_contract web3 defi "
          "wallet ledger nft solidity",
          smart_contracts="smart_contract solidity evm",
          defi="defi liquidity_pool staking",
          cryptocurrency="bitcoin ethereum cryptocurrency wallet"),
    _root("security",
          "security vulnerability exploit encryption decryption authentication "
          "authorization password credential tls ssl certificate oauth jwt firewall malware "
          "phishing xss csrf injection",
          cryptography="encryption decryption cipher tls ssl certificate cryptographic",
          authentication="authentication authorization password oauth jwt login mfa",
          application_security="xss csrf injection sql_injection vulnerability exploit "
                               "sanitize"),
    _root("cloud_computing",
          "cloud aws azure gcp kubernetes docker container serverless lambda deployment "
          "terraform devops cloudflare vm scaling",
          containers="docker container kubernetes pod helm",
          serverless="serverless lambda function_as_a_service cloudflare",
          infrastructure="terraform devops deployment scaling load_balancer vm cdn"),
)


def _matchable(words: Iterable[str]) -> set[str]:
    """Unigrams and ``a_b`` bigrams of a word sequence."""
    seq = list(words)
    grams = set(seq)
    grams.update(f"{a}_{b}" for a, b in itertools.pairwise(seq))
    return grams


def _fold_term(term: str) -> str:
    return "_".join(_stem(part) for part in term.split("_"))


_FOLDED = tuple(
    (root, frozenset(_fold_term(t) for t in root.related),
     tuple((sub, frozenset(_fold_term(t) for t in words)) for sub, words in root.subtopics))
    for root in TOPIC_HIERARCHY
)


def _hierarchy_words(text: str) -> list[str]:
    out = []
    for match in _WORD.finditer(text.lower()):
        word = match.group(0).replace("\u2019", "'")
        if word.endswith("'s"):
            word = word[:-2]
        out.append(_stem(word))
    return out


MIN_TOPIC_HITS = 2


def topics_for(text: str, *, limit: int = 6) -> list[tuple[str, float]]:
    """Hive topics of ``text`` by keyword matching: ``root`` when at least two of its terms
    occur (distinct words), with ``root:subtopic`` for each subtopic with a term there. The
    score is ``min(1, hits / 3)``. Best first, then by name; at most ``limit``."""
    grams = _matchable(_hierarchy_words(text))
    found: list[tuple[str, float]] = []
    for root, related, subs in _FOLDED:
        hits = grams & related
        sub_found = []
        for sub, words in subs:
            sub_hits = grams & words
            if sub_hits:
                hits |= sub_hits
                sub_found.append((f"{root.name}:{sub}", min(1.0, len(sub_hits) / 3)))
        if len(hits) >= MIN_TOPIC_HITS:
            found.append((root.name, min(1.0, len(hits) / 3)))
            found.extend(sub_found)
    found.sort(key=lambda t: (-t[1], t[0]))
    return found[:limit]


# -- follow-up detection --------------------------------------------------------------------------


@attrs.frozen
class FollowUpRule:
    """One follow-up pattern with Hive's score for it and the thread type it implies."""

    name: str
    pattern: re.Pattern[str]
    score: float
    thread_type: ThreadType


_NUM = r"(?:\d+|one|two|three|four|five|six|seven|eight|nine|ten|a few|few|some|several|more|a|an)"
_ORDINAL = (r"(?:first|second|third|fourth|fifth|sixth|seventh|eighth|ninth|tenth|last|"
            r"previous|\d+(?:st|nd|rd|th))")
_ITEM = (r"(?:one|point|item|option|step|example|answer|suggestion|approach|method|idea|"
         r"solution|bullet|thing|part|section|tip|reason)s?")
_PRONOUN = r"(?:it|that|this|they|them|those|these)"

# Hive (thematic_clustering.rs): "tell me more" 0.9, examples or ordinals 0.8, explain or show
# 0.7, pronoun 0.6, anything else that reads as a continuation 0.5; above 0.3 Hive asks an LLM
# to confirm, which this offline plugin does not (every rule scores above 0.3).
FOLLOW_UP_RULES: tuple[FollowUpRule, ...] = (
    FollowUpRule("tell_me_more", re.compile(
        r"\btell me more\b|\bmore (?:about|on|details?|detail on|info(?:rmation)?)\b"
        r"|\belaborate\b|\bexpand on\b|\bgo (?:on|deeper)\b|\bkeep going\b|^continue\b"),
        0.9, ThreadType.FOLLOW_UP),
    FollowUpRule("examples", re.compile(
        rf"\b(?:give|show|list|provide|share) (?:me |us )?{_NUM}?\s*(?:more |other |concrete |"
        rf"real[- ]world |practical |code )?examples?\b"
        rf"|\bexamples? (?:of|for) {_PRONOUN}\b|\b(?:any|some|more) examples?\b"),
        0.8, ThreadType.FOLLOW_UP),
    FollowUpRule("ordinal", re.compile(
        rf"\b(?:the )?{_ORDINAL} {_ITEM}\b|\b(?:number|item|point|step|option|#) ?\d+\b"),
        0.8, ThreadType.LIST_REFERENCE),
    FollowUpRule("explain", re.compile(
        rf"\bexplain\b|\bshow me\b|\bclarify\b|\bwhat do you mean\b"
        rf"|\bwhat does {_PRONOUN} mean\b"),
        0.7, ThreadType.CLARIFICATION),
    FollowUpRule("pronoun", re.compile(
        rf"^{_PRONOUN}\b|\b{_PRONOUN}\s*[?.!]*$"),
        0.6, ThreadType.CONTINUATION),
    FollowUpRule("continuation", re.compile(
        r"^(?:and|also|but|so|then|what about|how about|what if|why not|same for|"
        r"and what about)\b"),
        0.5, ThreadType.CONTINUATION),
)
FOLLOW_UP_THRESHOLD = 0.3
_SHORT_QUESTION_WORDS = 6


@attrs.frozen
class FollowUp:
    """A question detected as a follow-up of an earlier conversation.

    :ivar score: the best matching rule's score, plus 0.1 per further matching rule, at most 1
    :ivar rule: the best matching rule's name
    :ivar thread_type: the ``conversation_threads.thread_type`` it implies
    :ivar text: the words that matched (stored as ``reference_text``)
    :ivar rules: every matching rule, best first
    """

    score: float
    rule: str
    thread_type: ThreadType
    text: str
    rules: tuple[str, ...]


def _normalise_question(question: str) -> str:
    return re.sub(r"\s+", " ", question.lower().replace("\u2019", "'")).strip()


# "this/that/these/those" before one of these words is a pronoun ("that sounds wrong"); before
# any other word it is a determiner or a conjunction ("this class returns …", "ensure that
# item …"), which is how an ordinary question or statement begins, not a reference back.
_PRONOUN_NEXT = frozenset("""
is isn't was wasn't are aren't were weren't be been being am do does doesn't did didn't done
don't has have had can can't cannot could couldn't should shouldn't would wouldn't will won't
might must may shall one ones part again also too too? sounds sound seems seem looks look
means mean works work worked happens happen happened makes make made gives give fails fail
failed breaks break broke said says way thing stuff approach idea answer example code
""".split())  # noqa: SIM905 - a word list reads best as text
_DEICTIC = frozenset({"this", "that", "these", "those"})
_TOKEN = re.compile(r"[a-z0-9']+")
_TRAILING_WORDS = 8  # a trailing pronoun counts in a question (?) or a text this short


def _pronoun(text: str, short: bool) -> str | None:
    """The pronoun that makes ``text`` read as a reference back, or ``None``."""
    words: list[str] = _TOKEN.findall(text)
    if not words:
        return None

    def pronoun_at(i: int) -> bool:
        word = words[i]
        if word not in {"it", "they", "them", *_DEICTIC}:
            return False
        if word in _DEICTIC and i + 1 < len(words):
            return words[i + 1] in _PRONOUN_NEXT
        return True

    if pronoun_at(0):
        return words[0]
    last = len(words) - 1
    if pronoun_at(last) and (text.rstrip().endswith("?") or len(words) <= _TRAILING_WORDS):
        return words[last]
    if short:
        for i in range(len(words)):
            if pronoun_at(i):
                return words[i]
    return None


def detect_follow_up(question: str) -> FollowUp | None:
    """Whether ``question`` reads as a follow-up (Hive's rules and scores), or ``None``.

    The pronoun rule applies to a pronoun that starts the question, ends a question (``?``)
    or a short text, or stands anywhere in a short question (at most six words); "this",
    "that", "these" and "those" count only where they stand for something ("that sounds
    wrong"), not before a noun ("this class returns …", "ensure that item …").
    """
    text = _normalise_question(question)
    if not text:
        return None
    matched: list[tuple[FollowUpRule, str]] = []
    short = len(text.split()) <= _SHORT_QUESTION_WORDS
    for rule in FOLLOW_UP_RULES:
        if rule.name == "pronoun":
            word = _pronoun(text, short)
            if word is not None:
                matched.append((rule, word))
            continue
        m = rule.pattern.search(text)
        if m is not None:
            matched.append((rule, m.group(0).strip()))
    if not matched:
        return None
    matched.sort(key=lambda pair: -pair[0].score)  # stable: rule order breaks ties
    best, words = matched[0]
    score = min(1.0, round(best.score + 0.1 * (len(matched) - 1), 4))
    if score <= FOLLOW_UP_THRESHOLD:
        return None
    return FollowUp(score=score, rule=best.name, thread_type=best.thread_type, text=words,
                    rules=tuple(rule.name for rule, _ in matched))


# -- FTS5 queries ---------------------------------------------------------------------------------

MAX_QUERY_TERMS = 64


def clean_text(text: str) -> str:
    """``text`` without NUL characters and with lone surrogates replaced (SQLite takes UTF-8)."""
    return text.replace("\x00", " ").encode("utf-8", "replace").decode("utf-8")


def fts_string(chunk: str) -> str:
    """One FTS5 string token: ``"…"`` with inner double quotes doubled. Inside a string FTS5
    gives no character a meaning (operators, ``*``, ``:``, parentheses are plain text)."""
    return '"' + chunk.replace('"', '""') + '"'


def fts_all(text: str) -> str | None:
    """User text as an FTS5 query matching documents that contain every word of it: each
    whitespace-separated chunk becomes a quoted string (a chunk such as ``don't`` is a
    phrase of its tokens). ``None`` when there is nothing to search for. At most
    :data:`MAX_QUERY_TERMS` chunks are used."""
    chunks = clean_text(text).split()
    if not chunks:
        return None
    return " ".join(fts_string(c) for c in chunks[:MAX_QUERY_TERMS])


def fts_any(words: Sequence[str]) -> str | None:
    """An FTS5 query matching documents that contain any of ``words`` (ranked by bm25)."""
    chunks = [c for w in words for c in clean_text(w).split()]
    if not chunks:
        return None
    return " OR ".join(fts_string(c) for c in chunks[:MAX_QUERY_TERMS])


def query_words(question: str, *, limit: int = 12) -> list[str]:
    """The words of a question worth a full-text search: not stop words, three or more
    characters, first occurrence order, at most ``limit``."""
    seen: dict[str, None] = {}
    for match in _WORD.finditer(clean_text(question).lower()):
        word = match.group(0).replace("\u2019", "'")
        if len(word) < 3 or word in STOPWORDS or word.isdigit():
            continue
        seen.setdefault(word, None)
        if len(seen) >= limit:
            break
    return list(seen)
