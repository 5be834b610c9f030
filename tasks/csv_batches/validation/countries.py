"""Country names for letter addresses.

A line names a country when, compared loosely (case-insensitive; spaces, ``_ - ' , . ( )`` and
the typographic apostrophe removed; ``&``/``+`` read as ``and``; accents folded), it equals a
name below, possibly after a leading "the", "yr" or "y" (Welsh).  A line with a digit is never
a country: it is probably a postcode, and skipping it keeps the common case cheap.

``lookup`` returns the canonical name: ``UK`` for the names of the United Kingdom (its nations,
the Crown Dependencies and common misspellings), which are dropped from the end of an address;
any other canonical name makes a letter international.  The names follow the GOV.UK country
register's conventions (e.g. "United States", "South Korea", "Ivory Coast").
"""

from __future__ import annotations

import unicodedata
from functools import lru_cache

__all__ = ["EUROPE", "UK", "is_country", "lookup", "make_key", "postage_zone"]

UK = "United Kingdom"

# Names that mean the United Kingdom for addressing purposes, misspellings included.
_UK_NAMES = """
United Kingdom|UK|U.K.|U K|GB|G.B.|GBR|Great Britain|Britain|United Kingdom of Great Britain
and Northern Ireland|United Kingdom of Great Britain & Northern Ireland|England|Scotland|Wales|
Cymru|Northern Ireland|N Ireland|N. Ireland|North Ireland|NI|N.I.|Channel Islands|Guernsey|
Jersey|Alderney|Sark|Herm|Isle of Man|Isle of Mann|Bailiwick of Guernsey|Bailiwick of Jersey|
Y Deyrnas Unedig|Deyrnas Unedig|Prydain|Prydain Fawr|Lloegr|Yr Alban|Alban|Gogledd Iwerddon|
Ynys Manaw|Untied Kingdom|United Kindgom|United Kingdon|United Kingdome|United Kingdowm|
United Kigdom|United Kingom|United Kngdom|Unites Kingdom|Unted Kingdom|Uinted Kingdom|
Great Britian|Grate Britain|Engalnd|Englnad|Scotand|Scottland|Whales|Northen Ireland|
Nothern Ireland|Northern Irland
"""

# Canonical name first, then synonyms (other spellings, endonyms, Welsh names, old names); a
# line starting with "|" continues the previous one.
_COUNTRIES = """
Afghanistan
Aland Islands|Åland Islands|Åland
Albania|Shqipëria
Algeria
American Samoa
Andorra
Angola
Anguilla
Antarctica|British Antarctic Territory
Antigua and Barbuda|Antigua|Barbuda
Argentina
Armenia
Aruba
Ascension|Ascension Island
Australia
Austria|Österreich|Republik Österreich|Awstria
Azerbaijan
Azores|Autonomous Region of the Azores|Açores
Bahrain
Balearic Islands|Islas Baleares|Illes Balears|Majorca|Mallorca|Menorca|Minorca|Ibiza
Bangladesh
Barbados
Belarus|Byelorussia
Belgium|Belgique|België|Gwlad Belg
Belize
Benin
Bermuda
Bhutan
Bolivia
Bonaire, Sint Eustatius and Saba|Bonaire|Sint Eustatius|Saba|Caribbean Netherlands
Bosnia and Herzegovina|Bosnia|Bosnia-Herzegovina
Botswana
Bouvet Island
Brazil|Brasil
British Indian Ocean Territory|Chagos Islands
British Virgin Islands|Virgin Islands, British
Brunei|Brunei Darussalam
Bulgaria
Burkina Faso
Burundi
Cambodia
Cameroon
Canada
Canary Islands|Islas Canarias|Canaries|El Hierro|La Palma|La Gomera|Tenerife|Gran Canaria
|Fuerteventura|Lanzarote|La Graciosa
Cape Verde|Cabo Verde
Cayman Islands
Central African Republic
Ceuta
Chad
Chile
China|People's Republic of China|PRC|Tsieina
Christmas Island
Cocos (Keeling) Islands|Cocos Islands|Keeling Islands
Colombia
Comoros
Congo|Republic of the Congo|Congo-Brazzaville
Cook Islands
Corsica|Corse
Costa Rica
Croatia|Hrvatska
Cuba
Curaçao|Curacao
Cyprus|Cyprus (European Union)|Cyprus (EU)
Czechia|Czech Republic|Czechoslovakia|Česko|Tsiecia
Democratic Republic of the Congo|DR Congo|DRC|Congo-Kinshasa|Democratic Republic of Congo
|Congo, Democratic Republic of|Zaire
Denmark|Danmark|Denmarc
Djibouti
Dominica
Dominican Republic
East Timor|Timor-Leste|Timor Leste
Ecuador
Egypt|Yr Aifft
El Salvador
Equatorial Guinea
Eritrea
Estonia|Eesti
Eswatini|Swaziland
Ethiopia
Falkland Islands|Falklands|Falkland|Malvinas
Faroe Islands|Faroes|Faeroe Islands
Fiji
Finland|Suomi|Y Ffindir
France|Ffrainc|République française
French Guiana|Guyane
French Polynesia|Tahiti
French Southern Territories
Gabon
Georgia
Germany|Deutschland|Federal Republic of Germany|East Germany|West Germany|Yr Almaen|Almaen
Ghana
Gibraltar
Greece|Hellas|Ellada|Gwlad Groeg
Greenland
Grenada
Guadeloupe
Guam
Guatemala
Guinea
Guinea-Bissau
Guyana
Haiti
Heard Island and McDonald Islands
Honduras
Hong Kong|Hongkong
Hungary|Magyarország|Hwngari
Iceland|Ísland|Gwlad yr Iâ
India|Bharat
Indonesia
Iran|Persia
Iraq
Ireland|Republic of Ireland|Eire|Éire|ROI|Irish Republic|Rep of Ireland|Southern Ireland
|South Ireland|Iwerddon|Gweriniaeth Iwerddon
Israel
Italy|Italia|Yr Eidal
Ivory Coast|Côte d'Ivoire|Cote d'Ivoire|Cote dIvoire
Jamaica
Japan|Nippon|Siapan
Jordan
Kazakhstan|Khazakhstan
Kenya
Kiribati
Kosovo
Kuwait
Kyrgyzstan
Laos|Lao People's Democratic Republic
Latvia|Latvija
Lebanon
Lesotho
Liberia
Libya
Liechtenstein
Lithuania|Lietuva
Luxembourg
Macao|Macau
Madeira|Autonomous Region of Madeira|Região Autónoma da Madeira
Madagascar
Malawi
Malaysia
Maldives
Mali
Malta
Marshall Islands
Martinique
Mauritania|République Islamique de Mauritanie
Mauritius
Mayotte
Melilla
Mexico|México
Micronesia|Federated States of Micronesia|Micronesia, Federated States of
Moldova
Monaco
Mongolia
Montenegro
Montserrat
Morocco
Mozambique
Myanmar (Burma)|Myanmar|Burma
Namibia
Nauru
Nepal
Netherlands|The Netherlands|Holland|Nederland|Yr Iseldiroedd
New Caledonia
New Zealand|Aotearoa|New Zeeland|Seland Newydd
Nicaragua
Niger
Nigeria
Niue
Norfolk Island
North Korea|Democratic People's Republic of Korea|DPRK
North Macedonia|Macedonia|Republic of North Macedonia
Northern Mariana Islands
Norway|Norge|Norwy
Occupied Palestinian Territories|Palestine|Palestinian Territories|Palestinian Territory
|State of Palestine|Palestine, state of|West Bank|Gaza
Oman
Pakistan
Palau
Panama
Papua New Guinea
Paraguay
Peru
Philippines|The Philippines
Pitcairn, Henderson, Ducie and Oeno Islands|Pitcairn|Pitcairn Islands|Pitcairn Island
|Henderson Island|Ducie Island|Oeno Island
Poland|Polska|Gwlad Pwyl
Portugal|Portiwgal
Puerto Rico
Qatar
Reunion|Réunion|La Réunion
Romania|Rumania
Russia|Russian Federation|Rwsia
Rwanda|Rwanda, Republic of
Saint Barthélemy|Saint Barthelemy|St Barthélemy|St Barts
Saint Helena|St Helena
Saint Pierre and Miquelon|St Pierre and Miquelon
Saint-Martin (French part)|Saint Martin|St Martin
Samoa
San Marino|San Marino, Republic of
Sao Tome and Principe|São Tomé and Príncipe
Saudi Arabia
Senegal
Serbia
Seychelles
Sierra Leone
Singapore
Sint Maarten (Dutch part)|Sint Maarten
Slovakia|Slovensko
Slovenia|Slovenija
Solomon Islands
Somalia
South Africa|Republic of South Africa|RSA|De Affrica
South Georgia and the South Sandwich Islands|South Georgia|South Sandwich Islands
|Sandwich Islands
South Korea|Korea|Republic of Korea|Korea, Republic of|Korea (South)
South Sudan
Spain|España|Espana|Sbaen
Sri Lanka|Ceylon
St Kitts and Nevis|Saint Kitts and Nevis|Saint Kitts|St Kitts|Nevis
St Lucia|Saint Lucia
St Vincent|Saint Vincent and the Grenadines|St Vincent and the Grenadines|Saint Vincent
Sudan
Suriname|Surinam
Svalbard and Jan Mayen|Svalbard
Sweden|Sverige
Switzerland|Schweiz|Suisse|Svizzera|Swistir
Syria|Syrian Arab Republic
Taiwan|Republic of China
Tajikistan
Tanzania
Thailand
The Bahamas|Bahamas
The Gambia|Gambia
Togo
Tokelau
Tonga
Trinidad and Tobago|Trinidad|Tobago
Tristan da Cunha|Tristan
Tunisia
Turkey|Türkiye|Turkiye|Twrci
Turkmenistan
Turks and Caicos Islands
Tuvalu
Uganda
Ukraine|Wcráin
United Arab Emirates|UAE|U.A.E.|Emirates|Dubai|Dubai UAE|Abu Dhabi
United States|United States of America|USA|U.S.A.|US|U.S.|America|United States America
|United States Amercia|United States of Amercia|Amercia|Hawaii|Alaska|Yr Unol Daleithiau
|Unol Daleithiau
United States Minor Outlying Islands
United States Virgin Islands|US Virgin Islands|U.S. Virgin Islands|Virgin Islands, U.S.
Uruguay
Uzbekistan
Vanuatu
Vatican City|Vatican|Holy See|Vatican City State
Venezuela
Vietnam|Viet Nam
Wallis and Futuna
Western Sahara
Yemen
Zambia
Zimbabwe
Easter Island
"""

# Royal Mail's Europe zone (the rest of the world is "rest of world").
EUROPE: frozenset[str] = frozenset(
    """Aland Islands|Albania|Andorra|Armenia|Austria|Azerbaijan|Azores|Balearic Islands|Belarus|
Belgium|Bosnia and Herzegovina|Bulgaria|Canary Islands|Corsica|Croatia|Cyprus|Czechia|Denmark|
Estonia|Faroe Islands|Finland|France|Georgia|Germany|Gibraltar|Greece|Greenland|Hungary|Iceland|
Ireland|Italy|Kazakhstan|Kosovo|Kyrgyzstan|Latvia|Liechtenstein|Lithuania|Luxembourg|Madeira|
Malta|Moldova|Monaco|Montenegro|Netherlands|North Macedonia|Norway|Poland|Portugal|Romania|
Russia|San Marino|Serbia|Slovakia|Slovenia|Spain|Svalbard and Jan Mayen|Sweden|Switzerland|
Tajikistan|Turkey|Turkmenistan|Ukraine|Uzbekistan|Vatican City""".replace("\n", "").split("|")
)

_IGNORED = frozenset(" _-',.()\u2019")  # U+2019: the typographic apostrophe
_PREFIXES = ("", "the", "yr", "y")


def make_key(name: str) -> str:
    """Loose comparison key: lower case, no spaces/punctuation, '&'/'+' as 'and', no accents."""
    name = name.replace("&", "and").replace("+", "and")
    key = "".join(c for c in name.lower() if c not in _IGNORED and not c.isspace())
    if not key.isascii():
        # Fold accents ("Côte" -> "cote"); keep the original if letters remain non-ASCII.
        folded = "".join(
            c for c in unicodedata.normalize("NFKD", key) if not unicodedata.combining(c)
        )
        if folded.isascii():
            key = folded
    return key


def _build_table() -> dict[str, str]:
    table: dict[str, str] = {}
    # A line starting with "|" continues the previous one (long synonym lists).
    for line in _COUNTRIES.strip().replace("\n|", "|").splitlines():
        names = line.split("|")
        for name in names:
            table[make_key(name)] = names[0]
    # UK names last so that they win any clash (a UK address must never turn international).
    for name in _UK_NAMES.replace("\n", "").split("|"):
        if name.strip():
            table[make_key(name)] = UK
    return table


_TABLE = _build_table()


@lru_cache(maxsize=4096)
def lookup(line: str) -> str | None:
    """The canonical country named by an address line, ``UK`` for the UK, else None."""
    if any(c.isdigit() for c in line):
        return None
    key = make_key(line)
    if not key:
        return None
    for prefix in _PREFIXES:
        canonical = _TABLE.get(prefix + key)
        if canonical is not None:
            return canonical
    # "The Philippines" written for a table entry "Philippines".
    if key.startswith("the"):
        return _TABLE.get(key[3:])
    return None


def is_country(line: str) -> bool:
    """True when the line names any country, the UK included."""
    return lookup(line) is not None


def postage_zone(canonical: str) -> str:
    """'united-kingdom', 'europe' or 'rest-of-world' for a canonical name from ``lookup``."""
    if canonical == UK:
        return "united-kingdom"
    if canonical in EUROPE:
        return "europe"
    return "rest-of-world"
