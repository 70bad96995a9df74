"""What a UK dealer group sells: makes, models, derivatives and their specs, colours, equipment, names."""

from dataclasses import dataclass


@dataclass(frozen=True)
class CatalogueModel:
    make: str
    model: str
    derivatives: tuple[str, ...]
    trims: tuple[str, ...]
    body: str  # canonical body type
    fuel: str  # canonical fuel type
    transmission: str  # canonical transmission
    doors: int
    seats: int
    engine_cc: int  # 0 for electric
    co2: int
    new_price: int
    vin_prefix: str


MODELS: tuple[CatalogueModel, ...] = (
    CatalogueModel(
        "Ford",
        "Fiesta",
        ("1.0 EcoBoost 125 Titanium 5dr", "1.0 EcoBoost 100 Zetec 5dr", "1.0 EcoBoost Hybrid ST-Line 5dr"),
        ("Zetec", "Titanium", "ST-Line"),
        "hatchback",
        "petrol",
        "manual",
        5,
        5,
        999,
        112,
        21500,
        "WF0",
    ),
    CatalogueModel("Ford", "Focus", ("1.0 EcoBoost 125 ST-Line 5dr", "1.5 EcoBlue 120 Titanium Estate"), ("Titanium", "ST-Line"), "hatchback", "petrol", "manual", 5, 5, 999, 118, 26500, "WF0"),
    CatalogueModel("Ford", "Kuga", ("2.5 PHEV ST-Line 5dr CVT", "1.5 EcoBoost 150 Titanium 5dr"), ("Titanium", "ST-Line X"), "suv", "plugin_hybrid", "automatic", 5, 5, 2488, 32, 36500, "WF0"),
    CatalogueModel("Ford", "Transit Custom", ("2.0 EcoBlue 130 280 Limited L1 H1 Van",), ("Trend", "Limited"), "van", "diesel", "manual", 4, 3, 1995, 189, 34000, "WF0"),
    CatalogueModel("Vauxhall", "Corsa", ("1.2 Turbo SE 5dr", "1.2 SRi 5dr", "Corsa-e 100kW GS 50kWh 5dr"), ("SE", "SRi", "GS"), "hatchback", "petrol", "manual", 5, 5, 1199, 119, 19500, "W0V"),
    CatalogueModel("Vauxhall", "Astra", ("1.2 Turbo 130 Design 5dr", "1.5 Turbo D Elite 5dr"), ("Design", "GS", "Ultimate"), "hatchback", "petrol", "manual", 5, 5, 1199, 124, 25500, "W0V"),
    CatalogueModel(
        "Volkswagen", "Golf", ("1.5 TSI Life 5dr", "1.5 eTSI Style 5dr DSG", "2.0 TDI R-Line 5dr"), ("Life", "Style", "R-Line"), "hatchback", "petrol", "manual", 5, 5, 1498, 127, 28500, "WVW"
    ),
    CatalogueModel("Volkswagen", "Polo", ("1.0 TSI 95 Life 5dr", "1.0 TSI 110 R-Line 5dr"), ("Life", "R-Line"), "hatchback", "petrol", "manual", 5, 5, 999, 116, 21000, "WVW"),
    CatalogueModel("Volkswagen", "Tiguan", ("1.5 TSI 150 Life 5dr DSG", "2.0 TDI 150 Elegance 5dr DSG"), ("Life", "Elegance", "R-Line"), "suv", "petrol", "automatic", 5, 5, 1498, 152, 35500, "WVG"),
    CatalogueModel(
        "Nissan", "Qashqai", ("1.3 DiG-T MH 140 N-Connecta 5dr", "1.5 E-Power Tekna 5dr"), ("Acenta Premium", "N-Connecta", "Tekna"), "suv", "hybrid", "manual", 5, 5, 1332, 138, 30500, "SJN"
    ),
    CatalogueModel("Nissan", "Juke", ("1.0 DiG-T 114 N-Connecta 5dr", "1.6 Hybrid Tekna 5dr Auto"), ("Acenta", "N-Connecta", "Tekna"), "suv", "petrol", "manual", 5, 5, 999, 135, 24500, "SJN"),
    CatalogueModel("Kia", "Sportage", ("1.6 T-GDi 3 5dr", "1.6 T-GDi HEV GT-Line 5dr Auto"), ("2", "3", "GT-Line"), "suv", "hybrid", "automatic", 5, 5, 1598, 127, 33500, "U5Y"),
    CatalogueModel("Kia", "Niro", ("1.6 GDi Hybrid 2 5dr DCT", "150kW EV 4 64kWh 5dr Auto"), ("2", "3", "4"), "suv", "hybrid", "automatic", 5, 5, 1580, 100, 30500, "KNA"),
    CatalogueModel(
        "Hyundai", "Tucson", ("1.6 TGDi SE Connect 5dr", "1.6 TGDi Hybrid Premium 5dr Auto"), ("SE Connect", "Premium", "Ultimate"), "suv", "hybrid", "automatic", 5, 5, 1598, 131, 33000, "TMA"
    ),
    CatalogueModel("Toyota", "Yaris", ("1.5 Hybrid Icon 5dr CVT", "1.5 Hybrid Design 5dr CVT"), ("Icon", "Design", "Excel"), "hatchback", "hybrid", "automatic", 5, 5, 1490, 92, 22500, "VNK"),
    CatalogueModel(
        "Toyota", "Corolla", ("1.8 Hybrid Icon 5dr CVT", "2.0 Hybrid GR Sport Touring Sports"), ("Icon", "Design", "GR Sport"), "hatchback", "hybrid", "automatic", 5, 5, 1798, 101, 29500, "SB1"
    ),
    CatalogueModel("BMW", "3 Series", ("320d M Sport 4dr Step Auto", "330e M Sport 4dr Step Auto"), ("Sport", "M Sport"), "saloon", "diesel", "automatic", 4, 5, 1995, 118, 40500, "WBA"),
    CatalogueModel("BMW", "1 Series", ("118i M Sport 5dr", "120d xDrive Sport 5dr Step Auto"), ("Sport", "M Sport"), "hatchback", "petrol", "manual", 5, 5, 1499, 133, 30500, "WBA"),
    CatalogueModel("Audi", "A3", ("35 TFSI S Line 5dr", "30 TDI Sport 5dr"), ("Sport", "S Line", "Black Edition"), "hatchback", "petrol", "manual", 5, 5, 1498, 126, 31000, "WAU"),
    CatalogueModel("Audi", "Q5", ("40 TDI Quattro S Line 5dr S Tronic",), ("Sport", "S Line"), "suv", "diesel", "automatic", 5, 5, 1968, 171, 49500, "WAU"),
    CatalogueModel("Mercedes-Benz", "A-Class", ("A180 Sport 5dr Auto", "A200 AMG Line Premium 5dr Auto"), ("Sport", "AMG Line"), "hatchback", "petrol", "automatic", 5, 5, 1332, 132, 31500, "WDD"),
    CatalogueModel("Mercedes-Benz", "C-Class", ("C200 AMG Line 4dr 9G-Tronic", "C220d AMG Line Estate"), ("Sport", "AMG Line"), "saloon", "petrol", "automatic", 4, 5, 1496, 149, 44500, "WDD"),
    CatalogueModel("Tesla", "Model 3", ("Long Range AWD 4dr Auto", "RWD 4dr Auto"), ("Standard", "Long Range"), "saloon", "electric", "automatic", 4, 5, 0, 0, 42500, "5YJ"),
    CatalogueModel("MG", "MG4", ("125kW SE EV 51kWh 5dr Auto", "150kW Trophy EV Long Range 64kWh 5dr Auto"), ("SE", "Trophy"), "hatchback", "electric", "automatic", 5, 5, 0, 0, 27000, "LSJ"),
    CatalogueModel("MG", "ZS", ("1.5 VTi-TECH Excite 5dr", "1.0 T-GDi Exclusive 5dr DCT"), ("Excite", "Exclusive"), "suv", "petrol", "manual", 5, 5, 1498, 158, 20000, "LSJ"),
    CatalogueModel("Land Rover", "Discovery Sport", ("2.0 D165 R-Dynamic SE 5dr Auto",), ("S", "SE", "R-Dynamic SE"), "suv", "diesel", "automatic", 5, 7, 1997, 170, 47500, "SAL"),
    CatalogueModel("Land Rover", "Range Rover Evoque", ("2.0 D200 R-Dynamic SE 5dr Auto",), ("S", "R-Dynamic SE"), "suv", "diesel", "automatic", 5, 5, 1997, 166, 49000, "SAL"),
    CatalogueModel("Skoda", "Octavia", ("1.5 TSI SE L Estate", "2.0 TDI SE Technology 5dr"), ("SE", "SE L", "vRS"), "estate", "petrol", "manual", 5, 5, 1498, 128, 28000, "TMB"),
    CatalogueModel("Skoda", "Fabia", ("1.0 TSI 110 SE Comfort 5dr",), ("SE Comfort", "Colour Edition"), "hatchback", "petrol", "manual", 5, 5, 999, 119, 19500, "TMB"),
    CatalogueModel("Peugeot", "208", ("1.2 PureTech 100 Allure 5dr", "100kW E-208 GT 50kWh 5dr"), ("Active", "Allure", "GT"), "hatchback", "petrol", "manual", 5, 5, 1199, 118, 21500, "VR3"),
    CatalogueModel("Peugeot", "3008", ("1.2 PureTech Allure Premium 5dr EAT8",), ("Allure", "GT"), "suv", "petrol", "automatic", 5, 5, 1199, 138, 33000, "VF3"),
    CatalogueModel("Citroën", "C3", ("1.2 PureTech Shine 5dr", "1.2 PureTech Max 5dr"), ("Shine", "Max"), "hatchback", "petrol", "manual", 5, 5, 1199, 121, 19000, "VF7"),
    CatalogueModel(
        "Renault",
        "Clio",
        ("1.0 TCe 90 Techno 5dr", "1.6 E-Tech Hybrid 145 Esprit Alpine 5dr Auto"),
        ("Evolution", "Techno", "Esprit Alpine"),
        "hatchback",
        "petrol",
        "manual",
        5,
        5,
        999,
        118,
        20500,
        "VF1",
    ),
    CatalogueModel("Honda", "Jazz", ("1.5 i-MMD Hybrid EX 5dr eCVT",), ("Elegance", "EX", "Crosstar"), "hatchback", "hybrid", "automatic", 5, 5, 1498, 102, 23500, "JHM"),
    CatalogueModel("Volvo", "XC40", ("2.0 B4P Plus 5dr Auto", "Recharge Plus 175kW 69kWh 5dr Auto"), ("Core", "Plus", "Ultimate"), "suv", "petrol", "automatic", 5, 5, 1969, 161, 40500, "YV1"),
    CatalogueModel("Mini", "Hatch", ("1.5 Cooper Classic 3dr", "2.0 Cooper S Sport 3dr Auto"), ("Classic", "Sport", "Exclusive"), "hatchback", "petrol", "manual", 3, 4, 1499, 128, 23500, "WMW"),
)

COLOURS = ("Black", "White", "Silver", "Grey", "Magnetic Grey", "Blue", "Deep Blue", "Red", "Flame Red", "Green", "Orange", "Bronze")
FEATURES = (
    "Air conditioning",
    "Climate control",
    "Satellite navigation",
    "Bluetooth",
    "Apple CarPlay",
    "Android Auto",
    "Cruise control",
    "Adaptive cruise control",
    "Parking sensors",
    "Reversing camera",
    "Heated seats",
    "Heated steering wheel",
    "Alloy wheels",
    "LED headlights",
    "Keyless entry",
    "Lane assist",
    "Blind spot monitoring",
    "Panoramic roof",
    "Electric tailgate",
    "DAB radio",
    "Wireless charging",
    "Privacy glass",
    "Isofix",
)
FEATURE_SHORTHAND = {"Air conditioning": "A/C", "Satellite navigation": "Sat Nav", "Parking sensors": "PDC"}
SELLING_POINTS = ("FSH", "Full service history", "One owner", "2 keys", "Low mileage", "ULEZ compliant", "HPI clear", "Finance available", "12 months MOT")
SURNAMES = ("Hargreaves", "Sutcliffe", "Ackroyd", "Holroyd", "Patel", "Khan", "Smith", "Jones", "Walker", "Barraclough", "Greenwood", "Wilson", "Ahmed", "Taylor")
INITIALS = "ABCDEGHJKLMNPRST"
TITLES = ("Mr", "Mrs", "Ms", "Dr", "Miss")
LOCATIONS = ("Forecourt", "Workshop", "Overflow", "Prep bay", "Showroom")
