"""The hand-written tasks of bench/tasks/public.jsonl, as data (make_public.py turns them into JSON).

Each task: id ("hand/<kind>-<topic>"), kind, files (path -> text), tests (the protected test files),
fix (one exact replacement in one file: `before` occurs once in it) and, rarely, a request that
describes the symptom instead of the standard one. File texts are written flush left.
"""

from __future__ import annotations

HAND_WRITTEN: list[dict] = []


def task(id: str, kind: str, files: dict[str, str], tests: list[str], fix: dict[str, str],
         request: str | None = None) -> None:
    spec = {"id": id, "kind": kind, "files": files, "tests": tests, "fix": fix}
    if request is not None:
        spec["request"] = request
    HAND_WRITTEN.append(spec)


# --- wrong-operator ----------------------------------------------------------------------------

task(
    "hand/wrong-operator-cart-subtotal", "wrong-operator",
    files={
        "cart.py": r'''"""A shopping cart that keeps prices in whole cents."""

from dataclasses import dataclass, field


@dataclass
class LineItem:
    sku: str
    unit_cents: int
    quantity: int = 1

    def subtotal_cents(self) -> int:
        return self.unit_cents + self.quantity


@dataclass
class Cart:
    items: list[LineItem] = field(default_factory=list)

    def add(self, sku: str, unit_cents: int, quantity: int = 1) -> None:
        if quantity <= 0:
            raise ValueError("quantity must be positive")
        self.items.append(LineItem(sku, unit_cents, quantity))

    def total_cents(self) -> int:
        return sum(item.subtotal_cents() for item in self.items)
''',
        "test_cart.py": r'''import pytest

from cart import Cart, LineItem


def test_subtotal_multiplies_price_by_quantity():
    assert LineItem("apple", 40, 3).subtotal_cents() == 120


def test_total_of_several_items():
    cart = Cart()
    cart.add("apple", 40, 3)
    cart.add("bread", 250)
    assert cart.total_cents() == 370


def test_empty_cart_totals_zero():
    assert Cart().total_cents() == 0


def test_rejects_non_positive_quantity():
    with pytest.raises(ValueError):
        Cart().add("apple", 40, 0)
''',
    },
    tests=["test_cart.py"],
    fix={"path": "cart.py",
         "before": "        return self.unit_cents + self.quantity\n",
         "after": "        return self.unit_cents * self.quantity\n"},
)

task(
    "hand/wrong-operator-leap-year", "wrong-operator",
    files={
        "dates.py": r'''"""Calendar arithmetic on plain integers (year, month, day)."""

MONTH_DAYS = (31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31)


def is_leap_year(year: int) -> bool:
    """Gregorian rule: every 4th year, except centuries, except every 400th year."""
    return year % 4 == 0 and (year % 100 != 0 and year % 400 == 0)


def days_in_month(year: int, month: int) -> int:
    if not 1 <= month <= 12:
        raise ValueError(f"month out of range: {month}")
    if month == 2 and is_leap_year(year):
        return 29
    return MONTH_DAYS[month - 1]


def days_in_year(year: int) -> int:
    return 366 if is_leap_year(year) else 365
''',
        "test_dates.py": r'''import pytest

from dates import days_in_month, days_in_year, is_leap_year


@pytest.mark.parametrize("year, leap", [(2024, True), (2023, False), (1900, False), (2000, True)])
def test_is_leap_year(year, leap):
    assert is_leap_year(year) is leap


def test_february_has_29_days_in_a_leap_year():
    assert days_in_month(2024, 2) == 29
    assert days_in_month(2023, 2) == 28


def test_days_in_year():
    assert days_in_year(2024) == 366
    assert days_in_year(2023) == 365


def test_month_out_of_range():
    with pytest.raises(ValueError):
        days_in_month(2024, 13)
''',
    },
    tests=["test_dates.py"],
    fix={"path": "dates.py",
         "before": "    return year % 4 == 0 and (year % 100 != 0 and year % 400 == 0)\n",
         "after": "    return year % 4 == 0 and (year % 100 != 0 or year % 400 == 0)\n"},
)

# --- off-by-one --------------------------------------------------------------------------------

task(
    "hand/off-by-one-pagination", "off-by-one",
    files={
        "pages.py": r'''"""Split a list of results into fixed-size pages (page numbers start at 1)."""

import math


def page_count(total: int, per_page: int) -> int:
    return math.ceil(total / per_page) if total else 1


def get_page(items: list, number: int, per_page: int = 10) -> list:
    """The items on page `number` (1-based); an empty list past the last page."""
    if number < 1:
        raise ValueError("page numbers start at 1")
    start = (number - 1) * per_page
    return items[start:start + per_page - 1]
''',
        "test_pages.py": r'''import pytest

from pages import get_page, page_count

RESULTS = list(range(25))


def test_first_page_is_full():
    assert get_page(RESULTS, 1) == list(range(10))


def test_last_page_has_the_rest():
    assert get_page(RESULTS, 3) == [20, 21, 22, 23, 24]


def test_past_the_end_is_empty():
    assert get_page(RESULTS, 4) == []


def test_page_count():
    assert page_count(25, 10) == 3
    assert page_count(0, 10) == 1


def test_page_zero_is_rejected():
    with pytest.raises(ValueError):
        get_page(RESULTS, 0)
''',
    },
    tests=["test_pages.py"],
    fix={"path": "pages.py",
         "before": "    return items[start:start + per_page - 1]\n",
         "after": "    return items[start:start + per_page]\n"},
)

task(
    "hand/off-by-one-ngrams", "off-by-one",
    files={
        "ngrams.py": r'''"""Word n-grams for a small text-statistics tool."""

from collections import Counter


def ngrams(words: list[str], n: int) -> list[tuple[str, ...]]:
    """Every run of n consecutive words, in order.

    ngrams(["a", "b", "c"], 2) -> [("a", "b"), ("b", "c")]
    """
    if n < 1:
        raise ValueError("n must be at least 1")
    return [tuple(words[i:i + n]) for i in range(len(words) - n)]


def most_common_bigram(text: str) -> tuple[str, ...] | None:
    counts = Counter(ngrams(text.lower().split(), 2))
    if not counts:
        return None
    return counts.most_common(1)[0][0]
''',
        "test_ngrams.py": r'''from ngrams import most_common_bigram, ngrams


def test_bigrams():
    words = ["to", "be", "or", "not", "to", "be"]
    assert ngrams(words, 2) == [("to", "be"), ("be", "or"), ("or", "not"), ("not", "to"), ("to", "be")]


def test_unigrams_of_one_word():
    assert ngrams(["solo"], 1) == [("solo",)]


def test_too_few_words():
    assert ngrams(["a", "b"], 3) == []


def test_most_common_bigram():
    assert most_common_bigram("To be or not to be") == ("to", "be")
    assert most_common_bigram("hello") is None
''',
    },
    tests=["test_ngrams.py"],
    fix={"path": "ngrams.py",
         "before": "    return [tuple(words[i:i + n]) for i in range(len(words) - n)]\n",
         "after": "    return [tuple(words[i:i + n]) for i in range(len(words) - n + 1)]\n"},
)

# --- wrong-initial-value -----------------------------------------------------------------------

task(
    "hand/wrong-initial-value-running-max", "wrong-initial-value",
    files={
        "weather.py": r'''"""Summaries of daily temperature readings in degrees Celsius."""


def running_max(readings: list[float]) -> list[float]:
    """The highest reading so far, after each reading."""
    highest = 0
    result = []
    for value in readings:
        highest = max(highest, value)
        result.append(highest)
    return result


def warmest_day(readings: list[float]) -> int:
    """Index of the first day with the highest reading."""
    return readings.index(max(readings))
''',
        "test_weather.py": r'''from weather import running_max, warmest_day


def test_running_max_of_a_warm_week():
    assert running_max([3.0, 5.5, 4.0, 7.0]) == [3.0, 5.5, 5.5, 7.0]


def test_running_max_below_freezing():
    assert running_max([-4.5, -2.0, -3.0]) == [-4.5, -2.0, -2.0]


def test_running_max_of_nothing():
    assert running_max([]) == []


def test_warmest_day():
    assert warmest_day([-4.5, -2.0, -3.0, -2.0]) == 1
''',
    },
    tests=["test_weather.py"],
    fix={"path": "weather.py",
         "before": "    highest = 0\n",
         "after": "    highest = float(\"-inf\")\n"},
)

task(
    "hand/wrong-initial-value-compound-growth", "wrong-initial-value",
    files={
        "savings.py": r'''"""A savings account that compounds one interest rate per year."""


class Savings:
    def __init__(self, deposit_cents: int) -> None:
        self.deposit_cents = deposit_cents
        self.rates: list[float] = []

    def add_year(self, percent: float) -> None:
        self.rates.append(percent)

    def growth_factor(self) -> float:
        """The product of (1 + percent / 100) over the years so far; 1.0 before the first year."""
        factor = 0.0
        for percent in self.rates:
            factor *= 1 + percent / 100
        return factor

    def balance_cents(self) -> int:
        return round(self.deposit_cents * self.growth_factor())
''',
        "test_savings.py": r'''import pytest

from savings import Savings


def test_new_account_keeps_the_deposit():
    assert Savings(10_000).balance_cents() == 10_000


def test_two_years_at_ten_percent():
    account = Savings(10_000)
    account.add_year(10)
    account.add_year(10)
    assert account.growth_factor() == pytest.approx(1.21)
    assert account.balance_cents() == 12_100


def test_a_losing_year():
    account = Savings(5_000)
    account.add_year(-20)
    assert account.balance_cents() == 4_000
''',
    },
    tests=["test_savings.py"],
    fix={"path": "savings.py",
         "before": "        factor = 0.0\n",
         "after": "        factor = 1.0\n"},
)

# --- missing-function --------------------------------------------------------------------------

task(
    "hand/missing-function-slugify", "missing-function",
    files={
        "text.py": r'''"""Small string helpers for page titles and URLs."""

import re


def normalize_whitespace(text: str) -> str:
    """Collapse runs of whitespace to one space and trim the ends."""
    return re.sub(r"\s+", " ", text).strip()


def title_case(text: str) -> str:
    return " ".join(word.capitalize() for word in normalize_whitespace(text).split(" "))
''',
        "test_text.py": r'''from text import normalize_whitespace, slugify, title_case


def test_normalize_whitespace():
    assert normalize_whitespace("  a \t b\n") == "a b"


def test_title_case():
    assert title_case("the  old man") == "The Old Man"


def test_slugify():
    """slugify(title): the URL slug, lower case, words joined by "-", characters that are not
    letters or digits dropped."""
    assert slugify("Hello World") == "hello-world"
    assert slugify("  Many   spaces here ") == "many-spaces-here"
    assert slugify("Python 3.11: What's New?") == "python-311-whats-new"
''',
    },
    tests=["test_text.py"],
    fix={"path": "text.py",
         "before": '    return " ".join(word.capitalize() for word in normalize_whitespace(text).split(" "))\n',
         "after": '    return " ".join(word.capitalize() for word in normalize_whitespace(text).split(" "))\n'
                  '\n\ndef slugify(title: str) -> str:\n'
                  '    """The URL slug: lower-case words of letters and digits, joined by hyphens."""\n'
                  '    words = (re.sub(r"[^a-z0-9]", "", word) for word in title.lower().split())\n'
                  '    return "-".join(word for word in words if word)\n'},
)

task(
    "hand/missing-function-needs-restock", "missing-function",
    files={
        "inventory.py": r'''"""Stock levels for a small warehouse."""


class Inventory:
    def __init__(self) -> None:
        self._stock: dict[str, int] = {}

    def receive(self, sku: str, quantity: int) -> None:
        self._stock[sku] = self._stock.get(sku, 0) + quantity

    def ship(self, sku: str, quantity: int) -> None:
        available = self._stock.get(sku, 0)
        if quantity > available:
            raise ValueError(f"only {available} of {sku} in stock")
        self._stock[sku] = available - quantity

    def quantity(self, sku: str) -> int:
        return self._stock.get(sku, 0)

    def skus(self) -> list[str]:
        return sorted(self._stock)
''',
        "test_inventory.py": r'''import pytest

from inventory import Inventory, needs_restock


def make_inventory():
    inventory = Inventory()
    inventory.receive("bolt", 40)
    inventory.receive("nut", 5)
    inventory.receive("washer", 12)
    return inventory


def test_ship_reduces_stock():
    inventory = make_inventory()
    inventory.ship("bolt", 15)
    assert inventory.quantity("bolt") == 25


def test_cannot_ship_more_than_in_stock():
    with pytest.raises(ValueError):
        make_inventory().ship("nut", 6)


def test_needs_restock():
    """needs_restock(inventory, threshold): the SKUs whose quantity is below threshold, sorted."""
    inventory = make_inventory()
    inventory.ship("bolt", 35)
    assert needs_restock(inventory, 10) == ["bolt", "nut"]
    assert needs_restock(inventory, 5) == []
    assert needs_restock(inventory, 13) == ["bolt", "nut", "washer"]
''',
    },
    tests=["test_inventory.py"],
    fix={"path": "inventory.py",
         "before": "        return sorted(self._stock)\n",
         "after": "        return sorted(self._stock)\n"
                  "\n\ndef needs_restock(inventory: Inventory, threshold: int) -> list[str]:\n"
                  '    """The SKUs whose quantity is below threshold, sorted."""\n'
                  "    return [sku for sku in inventory.skus() if inventory.quantity(sku) < threshold]\n"},
)

# --- bug-in-helper -----------------------------------------------------------------------------

task(
    "hand/bug-in-helper-invoice-tax", "bug-in-helper",
    files={
        "money.py": r'''"""Money helpers; amounts are integer cents."""


def percent_of(cents: int, percent: float) -> int:
    """`percent` per cent of an amount, rounded to the nearest cent."""
    return round(cents * percent / 10)


def format_cents(cents: int) -> str:
    sign = "-" if cents < 0 else ""
    return f"{sign}${abs(cents) // 100}.{abs(cents) % 100:02d}"
''',
        "invoice.py": r'''"""Invoices: line items plus sales tax."""

from money import format_cents, percent_of


class Invoice:
    def __init__(self, tax_percent: float) -> None:
        self.tax_percent = tax_percent
        self.lines: list[tuple[str, int]] = []

    def add_line(self, description: str, cents: int) -> None:
        self.lines.append((description, cents))

    def subtotal(self) -> int:
        return sum(cents for _, cents in self.lines)

    def tax(self) -> int:
        return percent_of(self.subtotal(), self.tax_percent)

    def total(self) -> int:
        return self.subtotal() + self.tax()

    def summary(self) -> str:
        return f"{len(self.lines)} items, total {format_cents(self.total())}"
''',
        "test_invoice.py": r'''from invoice import Invoice


def make_invoice():
    invoice = Invoice(tax_percent=8)
    invoice.add_line("Consulting", 50_000)
    invoice.add_line("Travel", 12_000)
    return invoice


def test_subtotal():
    assert make_invoice().subtotal() == 62_000


def test_tax_is_a_percentage_of_the_subtotal():
    assert make_invoice().tax() == 4_960


def test_total_and_summary():
    invoice = make_invoice()
    assert invoice.total() == 66_960
    assert invoice.summary() == "2 items, total $669.60"
''',
    },
    tests=["test_invoice.py"],
    fix={"path": "money.py",
         "before": "    return round(cents * percent / 10)\n",
         "after": "    return round(cents * percent / 100)\n"},
)

task(
    "hand/bug-in-helper-config-comments", "bug-in-helper",
    files={
        "textutil.py": r'''"""Line helpers shared by the config and log parsers."""


def strip_comment(line: str) -> str:
    """The line without a trailing # comment, trimmed."""
    return line.partition("#")[2].strip()


def split_pair(line: str, sep: str = "=") -> tuple[str, str]:
    key, found, value = line.partition(sep)
    if not found:
        raise ValueError(f"expected {sep!r} in {line!r}")
    return key.strip(), value.strip()
''',
        "config.py": r'''"""Parse simple `key = value` config files."""

from textutil import split_pair, strip_comment


def parse_config(text: str) -> dict[str, str]:
    """Settings from the text; blank lines and # comments are ignored, later keys win."""
    settings: dict[str, str] = {}
    for line in text.splitlines():
        line = strip_comment(line)
        if not line:
            continue
        key, value = split_pair(line)
        settings[key] = value
    return settings


def get_int(settings: dict[str, str], key: str, default: int) -> int:
    return int(settings[key]) if key in settings else default
''',
        "test_config.py": r'''from config import get_int, parse_config

SAMPLE = """\
# server settings
host = example.org
port = 8080  # the default

debug = false
port = 9090
"""


def test_parse_config_reads_pairs_and_skips_comments():
    assert parse_config(SAMPLE) == {"host": "example.org", "port": "9090", "debug": "false"}


def test_get_int_falls_back_to_the_default():
    settings = parse_config(SAMPLE)
    assert get_int(settings, "port", 80) == 9090
    assert get_int(settings, "workers", 4) == 4
''',
    },
    tests=["test_config.py"],
    fix={"path": "textutil.py",
         "before": '    return line.partition("#")[2].strip()\n',
         "after": '    return line.partition("#")[0].strip()\n'},
)

# --- edge-case ---------------------------------------------------------------------------------

task(
    "hand/edge-case-average-empty", "edge-case",
    request="average() crashes on an empty list; it should return 0.0. "
            "Make python -m pytest -q pass without changing the tests.",
    files={
        "stats.py": r'''"""Descriptive statistics for lists of scores."""


def average(values: list[float]) -> float:
    """The arithmetic mean; 0.0 for an empty list."""
    return sum(values) / len(values)


def spread(values: list[float]) -> float:
    """The largest minus the smallest value; 0.0 for an empty list."""
    if not values:
        return 0.0
    return max(values) - min(values)


def above_average(values: list[float]) -> list[float]:
    mean = average(values)
    return [value for value in values if value > mean]
''',
        "test_stats.py": r'''from stats import above_average, average, spread


def test_average():
    assert average([2, 4, 9]) == 5


def test_average_of_nothing_is_zero():
    assert average([]) == 0.0


def test_spread():
    assert spread([3, 9, 4]) == 6
    assert spread([]) == 0.0


def test_above_average():
    assert above_average([1, 2, 6]) == [6]
    assert above_average([]) == []
''',
    },
    tests=["test_stats.py"],
    fix={"path": "stats.py",
         "before": "    return sum(values) / len(values)\n",
         "after": "    return sum(values) / len(values) if values else 0.0\n"},
)

task(
    "hand/edge-case-no-middle-name", "edge-case",
    files={
        "names.py": r'''"""Format people's names for badges and mailing labels."""


def full_name(first: str, last: str, middle: str | None = None) -> str:
    """'First Middle Last', or 'First Last' when there is no middle name."""
    parts = [first, middle, last]
    return " ".join(parts)


def initials(first: str, last: str, middle: str | None = None) -> str:
    return "".join(part[0].upper() for part in full_name(first, last, middle).split())


def mailing_label(first: str, last: str) -> str:
    return f"{last.upper()}, {first}"
''',
        "test_names.py": r'''from names import full_name, initials, mailing_label


def test_full_name_with_middle_name():
    assert full_name("John", "Kennedy", "Fitzgerald") == "John Fitzgerald Kennedy"


def test_full_name_without_middle_name():
    assert full_name("Ada", "Lovelace") == "Ada Lovelace"


def test_initials():
    assert initials("grace", "hopper", "brewster") == "GBH"
    assert initials("alan", "turing") == "AT"


def test_mailing_label():
    assert mailing_label("Ada", "Lovelace") == "LOVELACE, Ada"
''',
    },
    tests=["test_names.py"],
    fix={"path": "names.py",
         "before": "    parts = [first, middle, last]\n",
         "after": "    parts = [first, middle, last] if middle else [first, last]\n"},
)

task(
    "hand/edge-case-progress-nothing-to-do", "edge-case",
    files={
        "progress.py": r'''"""Text progress bars for a command-line downloader."""


def fraction_done(done: int, total: int) -> float:
    """The share of the work finished, from 0.0 to 1.0; a job with nothing to do is complete."""
    return min(done / total, 1.0)


def progress_bar(done: int, total: int, width: int = 20) -> str:
    filled = round(fraction_done(done, total) * width)
    return "[" + "#" * filled + "-" * (width - filled) + "]"


def percent_label(done: int, total: int) -> str:
    return f"{fraction_done(done, total) * 100:.0f}%"
''',
        "test_progress.py": r'''from progress import fraction_done, percent_label, progress_bar


def test_fraction_done():
    assert fraction_done(5, 20) == 0.25
    assert fraction_done(30, 20) == 1.0


def test_progress_bar():
    assert progress_bar(5, 20, width=8) == "[##------]"


def test_percent_label():
    assert percent_label(1, 3) == "33%"


def test_nothing_to_download_is_complete():
    assert fraction_done(0, 0) == 1.0
    assert progress_bar(0, 0, width=4) == "[####]"
    assert percent_label(0, 0) == "100%"
''',
    },
    tests=["test_progress.py"],
    fix={"path": "progress.py",
         "before": "    return min(done / total, 1.0)\n",
         "after": "    return min(done / total, 1.0) if total else 1.0\n"},
)

# --- wrong-default-argument --------------------------------------------------------------------

task(
    "hand/wrong-default-argument-truncate", "wrong-default-argument",
    files={
        "preview.py": r'''"""Shorten text for list views and notifications."""


def truncate(text: str, width: int = 8, suffix: str = "...") -> str:
    """Cut text to at most `width` characters (40 by default), ending with `suffix` when cut."""
    if len(text) <= width:
        return text
    return text[:width - len(suffix)].rstrip() + suffix


def notification(sender: str, message: str) -> str:
    return f"{sender}: {truncate(message)}"
''',
        "test_preview.py": r'''from preview import notification, truncate


def test_short_text_is_unchanged():
    assert truncate("short") == "short"


def test_default_width_is_40():
    assert truncate("x" * 40) == "x" * 40
    assert truncate("a" * 50) == "a" * 37 + "..."


def test_explicit_width():
    assert truncate("hello world", width=8) == "hello..."


def test_notification():
    assert notification("Ann", "Lunch at noon?") == "Ann: Lunch at noon?"
''',
    },
    tests=["test_preview.py"],
    fix={"path": "preview.py",
         "before": 'def truncate(text: str, width: int = 8, suffix: str = "...") -> str:\n',
         "after": 'def truncate(text: str, width: int = 40, suffix: str = "...") -> str:\n'},
)

task(
    "hand/wrong-default-argument-shared-dishes", "wrong-default-argument",
    files={
        "orders.py": r'''"""Restaurant orders: each order keeps its own list of dishes."""


class Order:
    def __init__(self, table: int, dishes: list[str] = []) -> None:
        self.table = table
        self.dishes = dishes

    def add(self, dish: str) -> None:
        self.dishes.append(dish)

    def ticket(self) -> str:
        return f"table {self.table}: " + ", ".join(self.dishes)
''',
        "test_orders.py": r'''from orders import Order


def test_ticket_lists_the_dishes():
    order = Order(4)
    order.add("soup")
    order.add("bread")
    assert order.ticket() == "table 4: soup, bread"


def test_new_orders_start_empty():
    first = Order(1)
    first.add("salad")
    second = Order(2)
    assert second.dishes == []


def test_given_dishes_are_kept():
    order = Order(7, ["tea"])
    order.add("cake")
    assert order.dishes == ["tea", "cake"]
''',
    },
    tests=["test_orders.py"],
    fix={"path": "orders.py",
         "before": "    def __init__(self, table: int, dishes: list[str] = []) -> None:\n"
                   "        self.table = table\n"
                   "        self.dishes = dishes\n",
         "after": "    def __init__(self, table: int, dishes: list[str] | None = None) -> None:\n"
                  "        self.table = table\n"
                  "        self.dishes = list(dishes) if dishes is not None else []\n"},
)

# --- traceback-at-test: a wrong value, so the traceback ends at an assert in the test ----------

task(
    "hand/traceback-at-test-word-frequencies", "traceback-at-test",
    files={
        "wordcount.py": r'''"""Word frequencies for a small text-statistics tool."""

import string


def words(text: str) -> list[str]:
    """The lower-case words of the text (split on any whitespace), without surrounding punctuation."""
    stripped = (word.strip(string.punctuation) for word in text.split(" "))
    return [word.lower() for word in stripped if word]


def word_frequencies(text: str) -> dict[str, int]:
    counts: dict[str, int] = {}
    for word in words(text):
        counts[word] = counts.get(word, 0) + 1
    return counts
''',
        "test_wordcount.py": r'''from wordcount import word_frequencies, words


def test_words_drop_punctuation():
    assert words("Hello,  world!") == ["hello", "world"]


def test_frequencies_across_lines():
    text = "The cat saw the dog.\nThe dog ran."
    assert word_frequencies(text) == {"the": 3, "cat": 1, "saw": 1, "dog": 2, "ran": 1}
''',
    },
    tests=["test_wordcount.py"],
    fix={"path": "wordcount.py",
         "before": '    stripped = (word.strip(string.punctuation) for word in text.split(" "))\n',
         "after": "    stripped = (word.strip(string.punctuation) for word in text.split())\n"},
)

task(
    "hand/traceback-at-test-settings-merge", "traceback-at-test",
    files={
        "settings.py": r'''"""Layered settings: built-in defaults, overridden by the user's choices."""

DEFAULTS = {"theme": "light", "font_size": 12, "autosave": True}


def merge(defaults: dict, overrides: dict) -> dict:
    """A new dict with every default, where the overrides win; neither input is changed."""
    return {**overrides, **defaults}


def changed_keys(defaults: dict, overrides: dict) -> list[str]:
    """The keys whose override differs from the default, sorted."""
    return sorted(key for key, value in overrides.items() if defaults.get(key) != value)
''',
        "test_settings.py": r'''from settings import DEFAULTS, changed_keys, merge


def test_overrides_win():
    merged = merge(DEFAULTS, {"theme": "dark"})
    assert merged["theme"] == "dark"
    assert merged["font_size"] == 12


def test_merge_changes_neither_input():
    overrides = {"font_size": 14}
    merge(DEFAULTS, overrides)
    assert DEFAULTS["font_size"] == 12
    assert overrides == {"font_size": 14}


def test_changed_keys():
    assert changed_keys(DEFAULTS, {"theme": "light", "autosave": False}) == ["autosave"]
''',
    },
    tests=["test_settings.py"],
    fix={"path": "settings.py",
         "before": "    return {**overrides, **defaults}\n",
         "after": "    return {**defaults, **overrides}\n"},
)

task(
    "hand/traceback-at-test-duration-format", "traceback-at-test",
    files={
        "duration.py": r'''"""Format durations given in whole seconds."""


def split_duration(seconds: int) -> tuple[int, int, int]:
    """(hours, minutes, seconds)"""
    minutes, secs = divmod(seconds, 60)
    hours, minutes = divmod(minutes, 60)
    return hours, minutes, secs


def format_duration(seconds: int) -> str:
    """'H:MM:SS', e.g. 3725 -> '1:02:05'."""
    hours, minutes, secs = split_duration(seconds)
    return f"{hours}:{secs:02d}:{minutes:02d}"
''',
        "test_duration.py": r'''from duration import format_duration, split_duration


def test_split_duration():
    assert split_duration(3725) == (1, 2, 5)


def test_format_duration():
    assert format_duration(3725) == "1:02:05"
    assert format_duration(59) == "0:00:59"
    assert format_duration(36_000) == "10:00:00"
''',
    },
    tests=["test_duration.py"],
    fix={"path": "duration.py",
         "before": '    return f"{hours}:{secs:02d}:{minutes:02d}"\n',
         "after": '    return f"{hours}:{minutes:02d}:{secs:02d}"\n'},
)
