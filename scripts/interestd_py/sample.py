"""The project's own synthetic sample (no outside data): a catalog of products
across eight themes with titles, descriptions and categories built from the
word lists below, and behaviour events of users whose theme preferences drift
over time. Deterministic for a seed (Python's random.Random only)."""

import bisect
import math
import os
import random

from .items import InteractionsWriter, Item, write_items_csv

T0_MS = 1_700_000_000_000  # 2023-11-14, the sample's first day

# Each theme: its category, sub-categories with their nouns, adjectives, makers,
# a title pattern and description phrases. {a} adjective, {n} noun, {m} maker,
# {x} an extra word of the sub-category, {num} a number.
THEMES = [
    {
        "name": "Outdoor", "pattern": "{m} {a} {n} {num}",
        "makers": ["Alpine", "Ridgeline", "Summit", "Trailhead", "Northwall", "Cairn", "Timberline"],
        "adj": ["Ultralight", "Waterproof", "Insulated", "Packable", "Rugged", "Breathable"],
        "subs": {
            "Backpacks": (["Backpack", "Daypack", "Trekking Pack", "Hydration Pack"],
                          ["litres of capacity", "a ventilated back panel", "hip-belt pockets"]),
            "Tents & Shelters": (["Tent", "Bivy Shelter", "Tarp", "Hammock"],
                                 ["a two-pole frame", "taped seams", "a vestibule for boots"]),
            "Hiking Footwear": (["Hiking Boots", "Trail Shoes", "Gaiters", "Approach Shoes"],
                                ["a grippy lug sole", "a waterproof membrane", "ankle support"]),
            "Camp Kitchen": (["Camp Stove", "Titanium Pot", "Water Filter", "Spork Set"],
                             ["fast boil times", "a folding handle", "backcountry water"]),
        },
        "desc": ["Built for long days on the trail and cold nights at camp.",
                 "Hikers and backpackers trust it from forest paths to alpine ridges.",
                 "Light enough for thru-hikes, tough enough for scree and rain."],
    },
    {
        "name": "Kitchen", "pattern": "{m} {a} {n}",
        "makers": ["Copperline", "Hearth & Co", "Maison Blanc", "Ironwood", "Sorrento", "Kaito"],
        "adj": ["Cast Iron", "Stainless", "Nonstick", "Enamelled", "Professional", "Classic"],
        "subs": {
            "Cookware": (["Skillet", "Dutch Oven", "Saucepan", "Wok", "Stock Pot"],
                         ["even heat", "oven-safe handles", "searing and braising"]),
            "Knives": (["Chef's Knife", "Santoku", "Paring Knife", "Bread Knife"],
                       ["a razor-sharp edge", "Damascus steel", "a balanced handle"]),
            "Coffee & Tea": (["Espresso Machine", "Burr Grinder", "Pour-Over Kettle", "French Press"],
                             ["barista-quality espresso", "precise grind size", "fresh coffee"]),
            "Baking": (["Stand Mixer", "Loaf Tin", "Baking Sheet", "Proofing Basket"],
                       ["sourdough bread", "cakes and pastries", "golden crusts"]),
        },
        "desc": ["A kitchen essential for home cooks who love to cook from scratch.",
                 "Made for everyday cooking, weekend baking and dinner parties.",
                 "Chefs reach for it for recipes from quick breakfasts to slow roasts."],
    },
    {
        "name": "Science Fiction Books", "pattern": "The {a} {n}",
        "makers": ["Vera Okonkwo", "Idris Hale", "Mara Lindqvist", "Tomas Reyes", "Ana Castell",
                   "Jun Takeda", "Elena Voss"],
        "adj": ["Last", "Silent", "Hollow", "Quantum", "Drowned", "Infinite", "Red", "Forgotten"],
        "subs": {
            "Space Opera": (["Armada", "Starfleet", "Nebula", "Empire", "Colony"],
                            ["galactic empires", "starship battles", "interstellar war"]),
            "Cyberpunk": (["Circuit", "Neon City", "Datastream", "Implant", "Syndicate"],
                          ["hackers and megacorporations", "neural implants", "rain-soaked cities"]),
            "Time Travel": (["Paradox", "Chronicle", "Loop", "Timeline", "Return"],
                            ["a time machine", "changing the past", "parallel timelines"]),
            "First Contact": (["Signal", "Visitors", "Message", "Envoy", "Artifact"],
                              ["an alien signal", "first contact", "xenolinguists"]),
        },
        "tail": "Readers of {x} and {y} will love it.",
        "desc": ["A science fiction novel by {m} about {x}.",
                 "{m}'s acclaimed sci-fi novel: a story of {x} and the people caught in it.",
                 "Hard science fiction from {m}, a page-turner about {x}."],
    },
    {
        "name": "Jazz Records", "pattern": "{m}: {a} {n}",
        "makers": ["The Miles Carter Quintet", "Lena Brooks", "Oscar Bell Trio", "Nina Alvarez",
                   "Ray Donovan Sextet", "Ella Moreau", "Quincy Park Big Band"],
        "adj": ["Blue", "Midnight", "Smoky", "Velvet", "After Hours", "Round", "Late"],
        "subs": {
            "Bebop": (["Changes", "Bop", "Riffs", "Sessions"],
                      ["fast bebop lines", "saxophone solos", "a hard-swinging rhythm section"]),
            "Cool Jazz": (["Mood", "Serenade", "Reverie", "Standards"],
                          ["cool jazz trumpet", "relaxed ballads", "modal improvisation"]),
            "Vocal Jazz": (["Ballads", "Songbook", "Love Songs", "Torch Songs"],
                           ["a jazz vocalist", "swing standards", "intimate piano accompaniment"]),
            "Jazz Fusion": (["Voltage", "Fusion", "Groove", "Orbit"],
                            ["electric piano and funk grooves", "jazz-rock fusion", "synth textures"]),
        },
        "tail": "Side B brings {y}.",
        "desc": ["A jazz record on 180-gram vinyl: {x}.",
                 "Remastered jazz LP featuring {x}, recorded live in one night.",
                 "Essential jazz vinyl for collectors: {x}."],
    },
    {
        "name": "Board Games", "pattern": "{a} {n}",
        "makers": ["Meeple Forge", "Hexagon Games", "Tabletop Guild", "Dice Tower Press", "Kingmaker"],
        "adj": ["Lost", "Crimson", "Golden", "Haunted", "Mighty", "Secret", "Clockwork"],
        "subs": {
            "Strategy Games": (["Kingdoms", "Railways", "Dominion", "Conquest", "Trade Routes"],
                               ["engine building", "area control", "resource management"]),
            "Party Games": (["Charades", "Word Rush", "Bluff", "Trivia Night"],
                            ["laughs for big groups", "quick rounds", "word guessing"]),
            "Cooperative Games": (["Expedition", "Outbreak", "Lighthouse", "Rescue"],
                                  ["players working together", "a shared goal", "co-op puzzles"]),
        },
        "tail": "Rules built around {x} and {y}.",
        "desc": ["A tabletop board game for 2 to 6 players from {m} with {x}.",
                 "Family game night favourite: cards, dice and {x}.",
                 "A board game by {m}; 60 minutes of {x}."],
    },
    {
        "name": "Running & Fitness", "pattern": "{m} {a} {n}",
        "makers": ["Stride", "Pulse", "Kinetic", "Apex", "Tempo", "Velocity"],
        "adj": ["Cushioned", "Lightweight", "Adjustable", "Reflective", "Compression", "Pro"],
        "subs": {
            "Running Shoes": (["Running Shoes", "Racing Flats", "Trail Runners", "Spikes"],
                              ["responsive foam", "marathon training", "a carbon plate"]),
            "Yoga": (["Yoga Mat", "Yoga Blocks", "Meditation Cushion", "Stretch Strap"],
                     ["non-slip grip", "balance and flexibility", "daily yoga practice"]),
            "Strength Training": (["Dumbbells", "Kettlebell", "Resistance Bands", "Pull-Up Bar"],
                                  ["home workouts", "muscle and strength", "progressive overload"]),
            "Fitness Tech": (["GPS Watch", "Heart Rate Monitor", "Smart Scale", "Fitness Tracker"],
                             ["pace and heart rate", "training plans", "sleep tracking"]),
        },
        "desc": ["Gear for runners and athletes training for a personal best.",
                 "Designed for workouts at the gym, at home or on the road.",
                 "Fitness equipment for cardio, strength and recovery."],
    },
    {
        "name": "Gardening", "pattern": "{m} {a} {n}",
        "makers": ["Greenthumb", "Meadowbrook", "Rootstock", "Bloomfield", "Fernhill"],
        "adj": ["Heirloom", "Organic", "Ergonomic", "Self-Watering", "Perennial", "Dwarf"],
        "subs": {
            "Seeds & Bulbs": (["Tomato Seeds", "Tulip Bulbs", "Herb Seed Kit", "Wildflower Mix"],
                              ["germination", "vegetable beds", "spring flowers"]),
            "Garden Tools": (["Pruning Shears", "Trowel", "Garden Fork", "Hori Hori Knife"],
                             ["digging and weeding", "clean cuts", "raised beds"]),
            "Houseplants": (["Monstera", "Fiddle Leaf Fig", "Snake Plant", "Pothos"],
                            ["bright indirect light", "indoor jungle", "easy care"]),
        },
        "desc": ["For gardeners growing flowers, vegetables and herbs.",
                 "Helps the garden thrive from the first seedlings to harvest.",
                 "Loved by gardeners with allotments, balconies and greenhouses."],
    },
    {
        "name": "Photography", "pattern": "{m} {a} {n}",
        "makers": ["Lumen", "Aperture Labs", "Prism", "Focal", "Shutterworks", "Kodama"],
        "adj": ["Full-Frame", "Mirrorless", "Compact", "Weather-Sealed", "Vintage", "Fast"],
        "subs": {
            "Cameras": (["Camera Body", "Rangefinder", "Film Camera", "Instant Camera"],
                        ["a high-resolution sensor", "street photography", "film photography"]),
            "Lenses": (["50mm Prime Lens", "Zoom Lens", "Macro Lens", "Wide-Angle Lens"],
                       ["sharp portraits", "creamy bokeh", "landscape photography"]),
            "Lighting & Support": (["Tripod", "LED Panel", "Softbox", "Camera Strap"],
                                   ["studio lighting", "long exposures", "steady shots"]),
        },
        "desc": ["Photography gear for photographers shooting portraits, landscapes and travel.",
                 "A photographer's tool for sharp images in any light.",
                 "For camera enthusiasts from first shutter click to pro shoots."],
    },
]

# Event mix (schemas/items.md types). A fresh item is mostly seen or clicked;
# a follow-up on the user's previous item moves down the funnel.
FRESH_TYPES = (("VIEW", 0.62), ("CLICK", 0.30), ("IMPRESSION", 0.08))
FOLLOW_TYPES = (("CLICK", 0.30), ("LIKE", 0.30), ("ADD_TO_CART", 0.28), ("SHARE", 0.12))
P_FOLLOW = 0.30           # next event acts on the previous item again
P_PURCHASE = 0.55         # an ADD_TO_CART followed by its PURCHASE
P_DISLIKE = 0.03          # an event on a theme the user does not like, a DISLIKE
P_DRIFT = 0.015           # per event: preferences move towards a new draw
THEME_ALPHA = 0.3         # Dirichlet concentration of a user's theme preferences
ZIPF_S = 1.05             # item popularity ~ 1 / rank^s inside a sub-category
SESSION_EVENTS = 8.0      # mean events per session
GAP_IN_SESSION_S = 40.0   # mean seconds between events of a session
GAP_SESSIONS_S = 86400.0  # mean seconds between sessions
TITLE_TRIES = 100         # title draws before a title is given up on (see make_items)
SERIAL_TITLES_FROM = 20000  # larger catalogs number the titles of a used-up theme


def _pick(rng, weighted):
    r = rng.random() * sum(w for _, w in weighted)
    for v, w in weighted:
        r -= w
        if r <= 0:
            return v
    return weighted[-1][0]


def _dirichlet(rng, k, alpha):
    g = [rng.gammavariate(alpha, 1.0) for _ in range(k)]
    s = sum(g) or 1.0
    return [x / s for x in g]


def make_items(rng, n_items):
    """n_items products spread evenly over the themes. Returns (items, where)
    with where[i] = (theme index, sub-category name). A drawn title already
    taken gets an edition suffix, up to TITLE_TRIES draws. Above
    SERIAL_TITLES_FROM items, a theme whose title space is used up (all
    TITLE_TRIES draws taken) numbers its later titles instead ("... No. 3"),
    so a large catalog costs one draw per title, not TITLE_TRIES, and its
    titles are unique. Up to SERIAL_TITLES_FROM items the draws are those of
    earlier versions (a used-up theme repeats titles), so their samples, the
    bench's 20,000-item one included, stay byte-identical."""
    items, where, titles = [], [], set()
    # Per theme: 0 = still drawing, else the next serial number.
    serial = [0] * len(THEMES)
    numbering = n_items > SERIAL_TITLES_FROM
    subs_sorted = [sorted(th["subs"]) for th in THEMES]
    for i in range(n_items):
        t = i % len(THEMES)
        th = THEMES[t]
        sub = rng.choice(subs_sorted[t])
        nouns, extras = th["subs"][sub]
        title = ""
        for _ in range(1 if serial[t] else TITLE_TRIES):
            title = th["pattern"].format(a=rng.choice(th["adj"]), n=rng.choice(nouns),
                                         m=rng.choice(th["makers"]), num=rng.randrange(10, 90))
            if title not in titles:
                break
            title += " " + rng.choice(["II", "III", "Deluxe", "Edition", "Plus", "Mini"])
            if title not in titles:
                break
        else:
            if numbering:
                serial[t] = serial[t] or 1
        if serial[t] and title in titles:
            base = title
            while title in titles:
                title = "%s No. %d" % (base, serial[t])
                serial[t] += 1
        titles.add(title)
        m = rng.choice(th["makers"])
        extra, other = rng.sample(extras, 2)
        text = " ".join([rng.choice(th["desc"]).format(m=m, x=extra),
                         th.get("tail", "Features {x} and {y}.").format(x=extra, y=other)])
        items.append(Item("p%04d" % (i + 1), title, text, [th["name"], sub]))
        where.append((t, sub))
    return items, where


def _activity(rng, n_users, n_events):
    """Events per user: lognormal activity, at least min(3, n_events/n_users)
    each, summing exactly to n_events (largest remainder)."""
    floor = min(3, n_events // n_users)
    w = [math.exp(rng.gauss(0.0, 0.9)) for _ in range(n_users)]
    rest = n_events - floor * n_users
    tot = sum(w)
    raw = [rest * x / tot for x in w]
    counts = [floor + int(r) for r in raw]
    left = n_events - sum(counts)
    for u in sorted(range(n_users), key=lambda u: (-(raw[u] - int(raw[u])), u))[:left]:
        counts[u] += 1
    return counts


def make_events(rng, items, where, n_users, n_events):
    """A list of (ts_ms, user index, seq, user_id, item_id, type), sorted by
    time across users."""
    n_themes = len(THEMES)
    # Item lists per (theme, sub-category) with Zipf-like popularity.
    pools = {}
    for i, key in enumerate(where):
        pools.setdefault(key, []).append(i)
    cum = {}
    for key, idx in pools.items():
        rng.shuffle(idx)
        acc, c = 0.0, []
        for r in range(len(idx)):
            acc += 1.0 / (r + 1) ** ZIPF_S
            c.append(acc)
        cum[key] = c
    subs = [sorted(th["subs"]) for th in THEMES]

    def draw_item(theme, sub_pref):
        sub = subs[theme][_pick(rng, list(zip(range(len(subs[theme])), sub_pref)))]
        key = (theme, sub)
        if key not in pools:  # a sub-category with no item in a small catalog
            key = next(k for k in sorted(pools) if k[0] == theme) if any(
                k[0] == theme for k in pools) else sorted(pools)[0]
        c = cum[key]
        return pools[key][min(bisect.bisect_left(c, rng.random() * c[-1]), len(c) - 1)]

    out = []
    for u, count in enumerate(_activity(rng, n_users, n_events)):
        uid = "user%04d" % (u + 1)
        pref = _dirichlet(rng, n_themes, THEME_ALPHA)
        sub_pref = [_dirichlet(rng, len(s), 1.0) for s in subs]
        ts = T0_MS + int(rng.random() * 3 * 86400 * 1000)
        prev, pending_purchase = None, False
        for k in range(count):
            if k > 0:
                if rng.random() < 1.0 / SESSION_EVENTS:
                    gap_s = rng.expovariate(1.0 / GAP_SESSIONS_S) + 600
                else:
                    gap_s = rng.expovariate(1.0 / GAP_IN_SESSION_S) + 2
                ts += max(1, int(gap_s * 1000))
            if rng.random() < P_DRIFT:
                new = _dirichlet(rng, n_themes, THEME_ALPHA)
                pref = [0.5 * a + 0.5 * b for a, b in zip(pref, new)]
            if pending_purchase and rng.random() < P_PURCHASE:
                item, typ = prev, "PURCHASE"
            elif prev is not None and rng.random() < P_FOLLOW:
                item, typ = prev, _pick(rng, FOLLOW_TYPES)
            elif rng.random() < P_DISLIKE:
                inv = [(t, (1.0 - p) ** 4) for t, p in enumerate(pref)]
                t = _pick(rng, inv)
                item, typ = draw_item(t, sub_pref[t]), "DISLIKE"
            else:
                t = _pick(rng, list(enumerate(pref)))
                item, typ = draw_item(t, sub_pref[t]), _pick(rng, FRESH_TYPES)
            pending_purchase = typ == "ADD_TO_CART"
            prev = item if typ != "DISLIKE" else None
            out.append((ts, u, k, uid, items[item].item_id, typ))
    out.sort(key=lambda e: (e[0], e[1], e[2]))
    return out


def make_sample(out_dir, n_users=200, n_items=300, n_events=20000, seed=7):
    """Writes out_dir/items.csv and out_dir/interactions.csv. Returns the
    (items, events) counts."""
    if n_users < 1 or n_items < len(THEMES) or n_events < n_users:
        raise ValueError("need users >= 1, items >= %d and events >= users" % len(THEMES))
    rng = random.Random(seed)
    items, where = make_items(rng, n_items)
    events = make_events(rng, items, where, n_users, n_events)
    os.makedirs(out_dir, exist_ok=True)
    write_items_csv(os.path.join(out_dir, "items.csv"), items)
    with InteractionsWriter(os.path.join(out_dir, "interactions.csv")) as w:
        for ts, _, _, uid, iid, typ in events:
            w.write(uid, iid, typ, ts)
    return len(items), len(events)
