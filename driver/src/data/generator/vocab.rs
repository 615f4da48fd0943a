//! Word lists the generator draws from. Changing any list changes the committed prompt files.

pub const FIRST_NAMES: &[&str] = &[
    "Amara", "Tobias", "Ingrid", "Mateo", "Yusuf", "Leila", "Henrik", "Sofia", "Dmitri", "Aiko",
    "Nadia", "Rafael", "Greta", "Kwame", "Elena", "Jonas", "Priya", "Oskar", "Mei", "Lucas",
    "Farah", "Viktor", "Chloe", "Tariq", "Hana", "Emil", "Zara", "Pablo", "Ines", "Kofi", "Maren",
    "Idris", "Noor", "Felix", "Rosa", "Anton", "Lina", "Marco", "Yara", "Bruno",
];

pub const LAST_NAMES: &[&str] = &[
    "Lindqvist",
    "Reyes",
    "Okafor",
    "Tanaka",
    "Novak",
    "Haddad",
    "Fischer",
    "Moreau",
    "Kowalski",
    "Silva",
    "Bergstrom",
    "Nakamura",
    "Petrov",
    "Mensah",
    "Costa",
    "Larsen",
    "Rahman",
    "Varga",
    "Dubois",
    "Ortega",
    "Castell",
    "Iyer",
    "Holm",
    "Ferreira",
    "Aydin",
    "Brandt",
    "Quinn",
    "Sato",
    "Marsh",
    "Keller",
    "Abara",
    "Vance",
    "Rossi",
    "Falk",
    "Osei",
    "Lund",
];

pub const CITIES: &[&str] = &[
    "Tallinn", "Porto", "Osaka", "Lagos", "Montreal", "Krakow", "Valencia", "Bergen", "Nairobi",
    "Tucson", "Lyon", "Busan", "Cordoba", "Utrecht", "Hobart", "Gdansk", "Quito", "Aarhus",
];

pub const DEPARTMENTS: &[&str] = &[
    "Logistics",
    "Finance",
    "Research",
    "Support",
    "Legal",
    "Procurement",
    "Security",
    "Marketing",
    "Facilities",
    "Quality",
];

pub const REGIONS: &[&str] = &["north", "south", "east", "west", "central"];

pub const PRODUCTS: &[&str] = &[
    "valve", "bracket", "sensor", "gasket", "spindle", "relay", "bearing", "nozzle", "hinge",
    "filter", "coupler", "damper",
];

pub const SERVICES: &[&str] = &[
    "auth",
    "billing",
    "search",
    "checkout",
    "inventory",
    "gateway",
    "mailer",
    "reports",
];

pub const LOG_MESSAGES: &[&str] = &[
    "request served",
    "cache miss, fetched from origin",
    "retrying upstream call",
    "slow query detected",
    "token refreshed",
    "connection pool resized",
    "upstream returned 503",
    "payload validated",
    "queue depth above threshold",
    "session expired",
];

pub const STATIONS: &[&str] = &[
    "Ilex", "Corvin", "Marrow", "Tessel", "Quarry", "Alder", "Brisk", "Cinder", "Dunmore", "Ember",
    "Fallow", "Gantry", "Heron", "Isolde", "Juniper", "Kestrel", "Lantern", "Mistral", "Nettle",
    "Orrin", "Pike", "Quill", "Rook", "Sable", "Thorne", "Umber", "Vesper", "Wren", "Yarrow",
    "Zephyr", "Ashby", "Bramble", "Copse", "Delta", "Eyrie", "Fjord", "Glen", "Hollow", "Inlet",
    "Jetty", "Knoll", "Ledge", "Moor", "Narrows", "Outpost", "Pinnacle", "Reach", "Spur",
];

pub const VERBS: &[&str] = &[
    "adjust", "scale", "merge", "clamp", "shift", "fold", "blend", "score", "weigh", "rotate",
    "filter", "bound", "mix", "reduce", "spread", "trim", "count", "route", "pack", "tally",
];

pub const NOUNS: &[&str] = &[
    "ledger", "orders", "batch", "signal", "offset", "weight", "bucket", "index", "cursor",
    "margin", "window", "quota", "token", "stock", "parcel", "ticket", "shard", "frame",
];
