"""Word lists for the synthetic NIX-Adresserat register: common Swedish names, street words, towns.

Drawn from what SCB's name statistics and the postal code map make common (approximately, weights by
rank); real enough that normalisation meets diacritics, hyphens and the usual street types, and small
enough to read. No real person's data: these are words, combined at random.
"""

from __future__ import annotations

from typing import Final

__all__ = [
    "FEMALE_GIVEN_NAMES",
    "GIVEN_NAMES",
    "MALE_GIVEN_NAMES",
    "STREETS",
    "STREETS_WHOLE",
    "STREET_STEMS",
    "STREET_TYPES",
    "STREET_WEIGHTS",
    "SURNAMES",
    "TOWNS",
]

FEMALE_GIVEN_NAMES: Final = (
    "Anna", "Eva", "Maria", "Karin", "Sara", "Kristina", "Lena", "Emma", "Kerstin", "Marie",
    "Malin", "Ingrid", "Jenny", "Hanna", "Linnéa", "Elin", "Ida", "Birgitta", "Sofia", "Annika",
    "Ulla", "Susanne", "Inger", "Elsa", "Julia", "Åsa", "Märta", "Agnes", "Astrid", "Ebba",
    "Anna-Karin", "Eva-Lena", "Ann-Marie", "Marie-Louise", "Émilie", "Zeynep", "Fatima", "Amira",
)  # fmt: skip

MALE_GIVEN_NAMES: Final = (
    "Lars", "Mikael", "Anders", "Johan", "Erik", "Per", "Karl", "Peter", "Thomas", "Jan",
    "Daniel", "Fredrik", "Hans", "Andreas", "Stefan", "Mohammed", "Magnus", "Mats", "Bengt", "Nils",
    "Björn", "Göran", "Håkan", "Sören", "Mårten", "Jörgen", "Örjan", "Ali", "Ahmed", "André",
    "Lars-Erik", "Karl-Johan", "Per-Olof", "Jan-Åke", "Carl", "Oscar", "William", "Liam", "Hugo", "Olle",
)  # fmt: skip

GIVEN_NAMES: Final = FEMALE_GIVEN_NAMES + MALE_GIVEN_NAMES

SURNAMES: Final = (
    "Andersson", "Johansson", "Karlsson", "Nilsson", "Eriksson", "Larsson", "Olsson", "Persson",
    "Svensson", "Gustafsson", "Pettersson", "Jonsson", "Jansson", "Hansson", "Bengtsson", "Jönsson",
    "Lindberg", "Jakobsson", "Magnusson", "Olofsson", "Lindström", "Lindqvist", "Lindgren", "Berg",
    "Axelsson", "Bergström", "Lundberg", "Lind", "Lundgren", "Lundqvist", "Mattsson", "Berglund",
    "Fredriksson", "Sandberg", "Henriksson", "Forsberg", "Sjöberg", "Wallin", "Engström", "Eklund",
    "Danielsson", "Lundin", "Håkansson", "Björk", "Bergman", "Gunnarsson", "Holm", "Wikström",
    "Samuelsson", "Isaksson", "Fransson", "Bergqvist", "Nyström", "Holmberg", "Arvidsson", "Löfgren",
    "Söderberg", "Nyberg", "Blomqvist", "Claesson", "Nordström", "Mårtensson", "Lundström", "Viklund",
    "Björklund", "Eliasson", "Pålsson", "Berggren", "Sandström", "Nordin", "Ström", "Åberg", "Ekström",
    "Holmgren", "Sundberg", "Hedlund", "Dahlberg", "Hellström", "Sjögren", "Öberg", "Månsson", "Åkesson",
    "Ali", "Mohamed", "Hassan", "Yilmaz", "Nguyen", "Kowalski", "De la Cruz", "O'Brien", "von Essen",
)  # fmt: skip

STREET_STEMS: Final = (
    "Stor", "Kyrko", "Skol", "Järnvägs", "Ring", "Björk", "Ek", "Lind", "Tall", "Gran", "Sjö", "Strand",
    "Kvarn", "Mölle", "Park", "Trädgårds", "Drottning", "Kungs", "Prins", "Smed", "Bagar", "Skomakar",
    "Väster", "Öster", "Norr", "Söder", "Ny", "Hamn", "Fabriks", "Skogs", "Ängs", "Rosen", "Syren",
    "Lärk", "Hassel", "Al", "Rönn", "Vass", "Linné", "Idrotts",
)  # fmt: skip

STREET_TYPES: Final = (  # (suffix, relative weight)
    ("gatan", 10), ("vägen", 10), ("gränd", 2), ("stigen", 2), ("torget", 1), ("backen", 1),
    ("allén", 1), ("leden", 1), ("gången", 1), ("plan", 1),
)  # fmt: skip

STREETS_WHOLE: Final = (  # written as more than one word, or with an abbreviation-prone prefix
    "Stora Nygatan", "Lilla Torget", "Sankt Eriksgatan", "Sankt Göransgatan", "Första Långgatan",
    "Andra Långgatan", "Gamla Kungsvägen", "Norra Strandvägen", "Östra Hamngatan", "Västra Ringvägen",
)  # fmt: skip

TOWNS: Final = (  # (postal town, first three postcode digits it owns, relative population weight)
    ("Stockholm", tuple(range(111, 130)), 20), ("Göteborg", tuple(range(411, 428)), 12),
    ("Malmö", tuple(range(211, 219)), 7), ("Uppsala", tuple(range(751, 758)), 4),
    ("Västerås", tuple(range(721, 726)), 3), ("Örebro", (702, 703), 3),
    ("Linköping", tuple(range(582, 588)), 3),
    ("Helsingborg", tuple(range(252, 257)), 3), ("Jönköping", tuple(range(553, 557)), 3),
    ("Norrköping", (602, 603), 3), ("Lund", tuple(range(222, 228)), 2), ("Umeå", tuple(range(903, 908)), 2),
    ("Gävle", tuple(range(802, 807)), 2), ("Borås", tuple(range(503, 508)), 2),
    ("Södertälje", (151, 152), 2),
    ("Eskilstuna", tuple(range(632, 636)), 2), ("Halmstad", tuple(range(302, 306)), 2),
    ("Växjö", tuple(range(352, 356)), 2), ("Karlstad", tuple(range(652, 657)), 2),
    ("Sundsvall", tuple(range(852, 858)), 2), ("Luleå", tuple(range(972, 976)), 1),
    ("Östersund", (831, 832), 1),
    ("Trollhättan", (461, 462), 1), ("Kalmar", (391, 392, 393), 1), ("Falun", (791,), 1),
    ("Skövde", (541,), 1),
    ("Kristianstad", (291,), 1), ("Karlskrona", (371,), 1), ("Kiruna", (981,), 1), ("Visby", (621,), 1),
    ("Täby", (183, 187), 1), ("Åre", (837,), 1), ("Ystad", (271,), 1), ("Piteå", (941,), 1),
)  # fmt: skip

STREETS: Final = tuple(stem + suffix for stem in STREET_STEMS for suffix, _ in STREET_TYPES) + STREETS_WHOLE
STREET_WEIGHTS: Final = tuple(weight for _ in STREET_STEMS for _, weight in STREET_TYPES) + (3,) * len(
    STREETS_WHOLE
)
