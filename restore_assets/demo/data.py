"""Vocabulary of the generated demo data: non-ASCII names, awkward text for COPY, JSON pieces."""

from __future__ import annotations

FIRST_NAMES = [
    "Zoë", "José", "Åsa", "François", "Søren", "Łukasz", "Chloé", "Ольга", "Aiko", "明",
    "Anaïs", "Björn", "Ngozi", "Kwame", "Mei", "Priya", "Zoltán", "Ana", "Liam", "Noah",
    "Emma", "Olivia", "Jürgen", "Siobhán", "Dvořák", "Renée", "Ahmed", "Fatma", "Иван", "健太",
]  # fmt: skip

LAST_NAMES = [
    "Müller", "García", "Nakamura", "Øster", "Dubois", "Smith", "O'Brien", "Kowalski",
    "Иванова", "田中", "Nguyễn", "Silva", "Kim", "Rossi", "Schäfer", "Jensen", "Núñez",
    "van der Berg", "Al-Farsi", "Lefèvre", "佐藤", "Papadopoulos", "Öztürk", "Brown",
]  # fmt: skip

DOMAINS = ["example.com", "example.org", "mail.example.net", "bücher.example", "example.jp"]

# country, city pairs by position (a NULL country with a NULL city, too)
COUNTRIES = ["DE", "FR", "JP", "US", "GB", "SE", "PL", "BR", None, "DK", "ES", "CN"]
CITIES = [
    "München", "Paris", "東京", "New York", "London", "Göteborg", "Kraków", "São Paulo", None,
    "København", "A Coruña", "北京",
]  # fmt: skip

# array elements that need quoting in PostgreSQL's array text form, and the string "NULL"
INTERESTS = [
    "hiking", "café culture", "rock, paper", 'say "hi"', "back\\slash", "東京", "NULL", "",
    "jazz", "chess", "naïve art", "ski", "{braces}", "cooking",
]  # fmt: skip

SOURCES = ["web", "ios", "android", "partner", "import"]
LANGUAGES = ["de", "fr", "ja", "en", "sv", "pl", "pt", "da", "es", "zh"]

ADJECTIVES = [
    "Classic", "Crème", "Nordic", "Smart", "Fjäll", "Vintage", "Señor", "Ærø", "Eco",
    "Ultra", "Tokyo 東京", "Mini", "Pro", "Blåbær",
]  # fmt: skip

NOUNS = [
    "Lamp", "Chair", "Kettle", "Backpack", "Notebook", "Mug", "Scarf", "Headphones", "Teapot",
    "Bicycle Bell", "Umbrella", "Café Table", "Pillow", "Desk",
]  # fmt: skip

DESCRIPTIONS = [
    "Handmade in Portugal.",
    "Dishwasher safe; 2 year warranty.",
    "Größe: 30 × 40 cm — Farbe nach Wahl",
    "限定版 (limited edition)",
    'A "best seller"\nsince 2019',
    "Tab\tseparated\tspecs",
    "Path C:\\demo\\manual.pdf",
    "Émail et acier inoxydable",
]

TAGS = ["new", "sale", "eco", "bestseller", "gift", "limited", "日本製", "handmade", "🚀 launch"]
COLORS = ["red", "blue", "green", "black", "white", "beige", "bordeaux", "türkis"]

STREETS = [
    "Königstraße 5",
    "1-2-3 Shibuya",
    "Rue de l'Église 3",
    "221B Baker Street",
    "ul. Długa 12/4",
    "Avenida Paulista, 1578",
    "Storgatan 1",
]

NOTES = [
    "Bitte nicht knicken",
    "お届け前に電話してください",
    "Leave at the door\nring twice",
    "Gate code:\t4711",
    "Fragile! \\ handle with care",
    'Customer said: "no rush"',
    "Geschenk für Zoë 🎁",
]

VOCABULARY: dict[str, list[str | None]] = {
    "first_names": FIRST_NAMES,
    "last_names": LAST_NAMES,
    "domains": DOMAINS,
    "countries": COUNTRIES,
    "cities": CITIES,
    "interests": INTERESTS,
    "sources": SOURCES,
    "languages": LANGUAGES,
    "adjectives": ADJECTIVES,
    "nouns": NOUNS,
    "descriptions": DESCRIPTIONS,
    "tags": TAGS,
    "colors": COLORS,
    "streets": STREETS,
    "notes": NOTES,
}
"""Every list above by the name the seed statements bind it to."""
