"""Writes the bundled sample domain: examples/corpus/ and examples/qa.jsonl.

Korvane Fluidics is an invented maker of pump controllers, sensors and gateways. Its
manuals, datasheets, release notes, warranty terms, policies and knowledge-base articles
are rendered from one table of facts (FACTS below), so a value stated in several documents
is the same everywhere, and every question in qa.jsonl is generated beside the sentence
that answers it. Near-duplicates are deliberate: three controller models, four firmware
versions and three warranty regions share their wording and differ in their numbers.

Run: .venv/bin/python examples/make_corpus.py   (deterministic: same bytes every run)
Check: .venv/bin/python examples/check_corpus.py
"""

from __future__ import annotations

import json
import shutil
from datetime import datetime, timezone
from pathlib import Path

HERE = Path(__file__).resolve().parent
CORPUS = HERE / "corpus"
QA_FILE = HERE / "qa.jsonl"

# --- the facts ---------------------------------------------------------------------------

COMPANY = {"name": "Korvane Fluidics", "founded": "1998", "hq": "Tromsvik", "ceo": "Ingrid Maalstad", "employees": "640",
           "plants": "Tromsvik and Brno", "support_email": "support@korvane.example"}

CONTROLLERS = {
    "PC-200": {"supply": "24 V DC", "inlet": "10 bar", "motor": "2.2 kW", "temp": "-10 to 50 °C", "ip": "IP54", "weight": "1.8 kg",
               "part": "KF-20014", "relays": "2", "fuse": "4 A", "modbus": "17", "reset": "5 seconds", "price": "EUR 1,240",
               "launch": "2019", "pumps": "one pump", "display": "a two-line LCD", "torque": "1.2 Nm", "bolts": "two M6 bolts",
               "filter": "6 months", "cable": "50 m", "log": "500 events", "size": "180 x 120 x 75 mm", "cert": "CE and UKCA",
               "wire": "1.5 mm²", "relay_rating": "5 A at 250 V AC"},
    "PC-220": {"supply": "24 V DC", "inlet": "16 bar", "motor": "4 kW", "temp": "-20 to 55 °C", "ip": "IP65", "weight": "2.4 kg",
               "part": "KF-22031", "relays": "4", "fuse": "6.3 A", "modbus": "22", "reset": "8 seconds", "price": "EUR 1,890",
               "launch": "2021", "pumps": "two pumps", "display": "a 3.5-inch colour screen", "torque": "1.5 Nm", "bolts": "four M6 bolts",
               "filter": "12 months", "cable": "100 m", "log": "2,000 events", "size": "220 x 160 x 90 mm", "cert": "CE, UKCA and UL",
               "wire": "2.5 mm²", "relay_rating": "8 A at 250 V AC"},
    "PC-250": {"supply": "48 V DC", "inlet": "25 bar", "motor": "7.5 kW", "temp": "-25 to 60 °C", "ip": "IP66", "weight": "3.1 kg",
               "part": "KF-25007", "relays": "6", "fuse": "10 A", "modbus": "25", "reset": "12 seconds", "price": "EUR 2,760",
               "launch": "2023", "pumps": "three pumps", "display": "a 5-inch touch screen", "torque": "2.0 Nm", "bolts": "four M8 bolts",
               "filter": "12 months", "cable": "150 m", "log": "10,000 events", "size": "300 x 200 x 110 mm", "cert": "CE, UKCA, UL and ATEX",
               "wire": "4 mm²", "relay_rating": "10 A at 250 V AC"},
}

ERROR_CODES = {  # code: (meaning, action), shared by the PC series
    "E-11": ("supply voltage below the minimum", "check the power supply and the 24/48 V terminal block"),
    "E-23": ("inlet pressure above the rated maximum", "open the bypass valve and check the pressure sensor"),
    "E-31": ("motor overtemperature", "let the motor cool for 20 minutes before restarting"),
    "E-41": ("dry running detected", "refill the suction line and vent the pump housing"),
    "E-47": ("lost connection to the level sensor", "check the sensor cable and the M12 connector"),
}

SENSORS = {
    "LS-10": {"kind": "level sensor", "range": "0 to 4 m", "accuracy": "±0.5 %", "cable": "5 m", "interval": "12 months",
              "current": "4 to 20 mA", "points": "two", "warmup": "30 seconds", "part": "KF-31010",
              "overload": "2 times the range", "gland": "M16 cable gland"},
    "LS-12": {"kind": "level sensor", "range": "0 to 10 m", "accuracy": "±0.25 %", "cable": "15 m", "interval": "18 months",
              "current": "4 to 20 mA", "points": "three", "warmup": "45 seconds", "part": "KF-31012",
              "overload": "3 times the range", "gland": "M20 cable gland"},
    "PS-40": {"kind": "pressure sensor", "range": "0 to 40 bar", "accuracy": "±0.1 %", "cable": "3 m", "interval": "24 months",
              "current": "0 to 10 V", "points": "five", "warmup": "10 seconds", "part": "KF-32040",
              "overload": "100 bar", "gland": "M12 connector"},
}

GATEWAYS = {
    "GW-3": {"ports": "three RS-485 ports", "devices": "32", "modem": "an LTE Cat-1 modem", "ip": "192.168.50.1", "admin": "8443",
             "power": "6 W", "vpn": "OpenVPN", "boot": "90 seconds", "log": "7 days",
             "temp": "-20 to 60 °C", "sim": "a Mini-SIM"},
    "GW-5": {"ports": "five RS-485 ports", "devices": "96", "modem": "an LTE Cat-4 modem", "ip": "192.168.60.1", "admin": "9443",
             "power": "11 W", "vpn": "WireGuard", "boot": "60 seconds", "log": "30 days",
             "temp": "-30 to 70 °C", "sim": "a Nano-SIM"},
}

FIRMWARE = {
    "3.1": {"date": "14 March 2024", "feature": "pump alternation by running hours", "fix": "KF-1182", "bootloader": "1.4",
            "duration": "6 minutes", "known": "the screen may flicker below -15 °C", "size": "18 MB", "models": "PC-200 and PC-220",
            "removed": "the legacy Telnet console", "from": "3.0"},
    "3.2": {"date": "2 September 2024", "feature": "Modbus TCP on the service port", "fix": "KF-1247", "bootloader": "1.4",
            "duration": "7 minutes", "known": "Modbus TCP drops idle sessions after 300 seconds", "size": "19 MB", "models": "PC-200 and PC-220",
            "removed": "SNMP version 1", "from": "3.1"},
    "4.0": {"date": "20 May 2025", "feature": "support for the PC-250 and the GW-5 gateway", "fix": "KF-1390", "bootloader": "2.0",
            "duration": "11 minutes", "known": "alarm history is cleared during the update", "size": "31 MB", "models": "PC-220 and PC-250",
            "removed": "support for the PC-200", "from": "3.2"},
    "4.1": {"date": "3 February 2026", "feature": "frost protection mode", "fix": "KF-1456", "bootloader": "2.0",
            "duration": "9 minutes", "known": "frost protection ignores sensors on the second RS-485 port", "size": "33 MB", "models": "PC-220 and PC-250",
            "removed": "the HTTP admin page without TLS", "from": "4.0"},
}

WARRANTY = {  # region: facts
    "EU": {"years": "three years", "rma": "rma-eu@korvane.example", "depot": "Brno", "hours": "08:00 to 17:00 CET", "phone": "+420 5 4321 7788",
           "shipping": "10 working days", "extension": "EUR 180 per year", "voltage": "230 V",
           "claim": "60 days", "excluded": "damage from frost"},
    "US": {"years": "two years", "rma": "rma-us@korvane.example", "depot": "Columbus, Ohio", "hours": "08:00 to 18:00 EST", "phone": "+1 614 555 0142",
           "shipping": "7 working days", "extension": "USD 210 per year", "voltage": "120 V",
           "claim": "30 days", "excluded": "lightning damage"},
    "APAC": {"years": "two years", "rma": "rma-apac@korvane.example", "depot": "Penang", "hours": "09:00 to 18:00 SGT", "phone": "+60 4 555 2310",
             "shipping": "14 working days", "extension": "USD 195 per year", "voltage": "240 V",
           "claim": "45 days", "excluded": "damage from flooding"},
}

SLA = {  # tier: severity: (first response, workaround)
    "Standard": {"Sev-1": ("4 hours", "2 business days"), "Sev-2": ("1 business day", "5 business days"), "Sev-3": ("3 business days", "next release")},
    "Premium": {"Sev-1": ("30 minutes", "8 hours"), "Sev-2": ("4 hours", "2 business days"), "Sev-3": ("1 business day", "next release")},
}


# --- writing documents and their questions -----------------------------------------------


class Doc:
    """One corpus document being written, with the questions it answers."""

    def __init__(self, path: str, title: str, kind: str = "md", access: list[str] | None = None) -> None:
        self.path, self.title, self.kind, self.access = path, title, kind, access
        self.blocks: list[tuple[str, str]] = []  # (kind, text): h1 h2 p li row
        self.qa: list[tuple[str, str]] = []

    def h(self, text: str, level: int = 2) -> Doc:
        self.blocks.append((f"h{level}", text))
        return self

    def p(self, text: str) -> Doc:
        self.blocks.append(("p", text))
        return self

    def li(self, *items: str) -> Doc:
        self.blocks.extend(("li", item) for item in items)
        return self

    def table(self, header: tuple[str, str], rows: list[tuple[str, str]]) -> Doc:
        self.blocks.append(("row", f"{header[0]}|{header[1]}"))
        self.blocks.extend(("row", f"{a}|{b}") for a, b in rows)
        return self

    def q(self, question: str, answer: str) -> Doc:
        self.qa.append((question, answer))
        return self


DOCS: list[Doc] = []
KB: list[dict] = []


def doc(path: str, title: str, kind: str = "md", access: list[str] | None = None) -> Doc:
    d = Doc(path, title, kind, access)
    DOCS.append(d)
    return d


def controller_manuals() -> None:
    for model, f in CONTROLLERS.items():
        d = doc(f"manuals/{model.lower()}-manual.md", f"{model} Pump Controller Manual")
        d.h(f"{model} Pump Controller Manual", 1)
        d.p(f"The {model} controls up to {f['pumps']} in booster and drainage stations. It is operated from "
            f"{f['display']} on the front panel and reports to a supervisory system over Modbus RTU.")
        d.h("Specifications")
        d.table(("Property", "Value"), [("Supply voltage", f["supply"]), ("Maximum inlet pressure", f["inlet"]),
                                        ("Maximum motor power", f["motor"]), ("Operating temperature", f["temp"]),
                                        ("Enclosure rating", f["ip"]), ("Weight", f["weight"]), ("Relay outputs", f["relays"]),
                                        ("Order number", f["part"])])
        d.q(f"What is the maximum inlet pressure of the {model} pump controller?", f["inlet"])
        d.q(f"What is the maximum motor power the {model} can drive?", f["motor"])
        d.q(f"What is the operating temperature range of the {model}?", f["temp"])
        d.q(f"What enclosure rating does the {model} controller have?", f["ip"])
        d.q(f"How much does the {model} controller weigh?", f["weight"])
        d.q(f"What is the order number of the {model} pump controller?", f["part"])
        d.q(f"How many relay outputs does the {model} have?", f["relays"])
        d.h("Installation")
        d.p(f"Mount the {model} on a vertical DIN rail or wall plate with {f['bolts']} and tighten the terminal screws to "
            f"{f['torque']}. Protect the supply line with a {f['fuse']} slow-blow fuse. Keep at least 10 cm of free space "
            f"above the housing for ventilation.")
        d.q(f"What torque should the terminal screws of the {model} be tightened to?", f["torque"])
        d.q(f"What fuse protects the supply line of the {model}?", f"{f['fuse']} slow-blow fuse")
        d.q(f"What fasteners are used to mount the {model}?", f["bolts"])
        d.h("Commissioning")
        d.p(f"On first start the {model} answers on Modbus address {f['modbus']} at 19200 baud. To restore factory settings, "
            f"hold the RESET key for {f['reset']} until the status LED turns blue.")
        d.q(f"What is the default Modbus address of the {model}?", f["modbus"])
        d.q(f"How long must the RESET key of the {model} be held to restore factory settings?", f["reset"])
        d.h("Error codes")
        for code, (meaning, action) in ERROR_CODES.items():
            d.li(f"{code}: {meaning}; {action}.")
        if model == "PC-220":
            d.q("What does error code E-41 mean on the PC-220?", "dry running detected")
            d.q("What should you do when the PC-220 shows E-31?", "let the motor cool for 20 minutes before restarting")
        d.h("Maintenance")
        d.p(f"Replace the cabinet air filter of the {model} every {f['filter']}. Sensor cables to the {model} may be up to "
            f"{f['cable']} long. The event log holds the last {f['log']}; older entries are overwritten.")
        d.q(f"How often should the cabinet air filter of the {model} be replaced?", f["filter"])
        d.q(f"What is the maximum sensor cable length for the {model}?", f["cable"])
        d.q(f"How many events does the {model} event log hold?", f["log"])


def controller_datasheets() -> None:
    for model, f in CONTROLLERS.items():
        d = doc(f"datasheets/{model.lower()}.html", f"{model} datasheet", "html")
        d.h(f"{model} pump controller", 1)
        d.p(f"Introduced in {f['launch']}, the {model} runs up to {f['pumps']} from a {f['supply']} supply. "
            f"List price: {f['price']} excluding VAT.")
        d.q(f"In which year was the {model} introduced?", f["launch"])
        d.q(f"What is the list price of the {model} controller?", f["price"])
        d.q(f"How many pumps can one {model} control?", f["pumps"])
        d.q(f"What supply voltage does the {model} need?", f["supply"])
        d.h("Key data")
        d.table(("Feature", "Value"), [("Inlet pressure (max.)", f["inlet"]), ("Motor power (max.)", f["motor"]),
                                       ("Protection", f["ip"]), ("Display", f["display"]), ("Order no.", f["part"])])
        d.q(f"What kind of display does the {model} have?", f["display"])
        d.h("Dimensions and approvals")
        d.p(f"Housing: {f['size']} (W x H x D). Approvals: {f['cert']}.")
        d.q(f"What are the housing dimensions of the {model}?", f["size"])
        d.q(f"Which approvals does the {model} carry?", f["cert"])


def sensor_docs() -> None:
    for model, f in SENSORS.items():
        kind = "pdf" if model == "LS-12" else "md"
        ext = "pdf" if kind == "pdf" else "md"
        d = doc(f"sensors/{model.lower()}-calibration.{ext}", f"{model} {f['kind']}: calibration guide", kind)
        d.h(f"{model} {f['kind']}: calibration guide", 1)
        d.p(f"The {model} measures {f['range']} with an accuracy of {f['accuracy']} and outputs {f['current']}. "
            f"It ships with a {f['cable']} cable (order number {f['part']}).")
        d.q(f"What is the measuring range of the {model}?", f["range"])
        d.q(f"What accuracy does the {model} {f['kind']} have?", f["accuracy"])
        d.q(f"How long is the cable supplied with the {model}?", f["cable"])
        d.q(f"What output signal does the {model} provide?", f["current"])
        d.h("When to calibrate")
        d.p(f"Calibrate the {model} every {f['interval']}, after a cable repair, and whenever readings drift by more than twice "
            f"the stated accuracy.")
        d.q(f"How often should the {model} be calibrated?", f["interval"])
        d.h("Procedure")
        d.p(f"Power the sensor and let it warm up for {f['warmup']}. A full calibration uses {f['points']} reference points; "
            f"record each reading in the calibration log before saving.")
        d.q(f"How long must the {model} warm up before calibration?", f["warmup"])
        d.q(f"How many reference points does a full {model} calibration use?", f["points"])
        d.h("Installation notes")
        d.p(f"The {model} withstands an overload of {f['overload']} without damage. Its cable enters through an {f['gland']}.")
        d.q(f"What overload does the {model} withstand without damage?", f["overload"])
        d.q(f"Through what does the {model} cable enter?", f["gland"])
    for model in ("LS-10", "PS-40"):
        f = SENSORS[model]
        d = doc(f"datasheets/{model.lower()}.html", f"{model} datasheet", "html")
        d.h(f"{model} {f['kind']}", 1)
        d.p(f"Range {f['range']}, accuracy {f['accuracy']}, output {f['current']}, order number {f['part']}.")
        d.q(f"What is the order number of the {model} {f['kind']}?", f["part"])
        d.p(f"Recommended calibration interval: {f['interval']}.")
        housing = {"LS-10": ("stainless steel 316L", "420 g"), "PS-40": ("duplex stainless steel", "260 g")}[model]
        d.p(f"Housing material: {housing[0]}. Weight without cable: {housing[1]}.")
        d.q(f"What is the housing of the {model} made of?", housing[0])
        d.q(f"How much does the {model} weigh without its cable?", housing[1])


def gateway_docs() -> None:
    for model, f in GATEWAYS.items():
        kind = "md" if model == "GW-3" else "pdf"
        d = doc(f"gateways/{model.lower()}-setup.{kind}", f"{model} gateway setup", kind)
        d.h(f"{model} gateway setup", 1)
        d.p(f"The {model} connects field devices to the Korvane cloud over {f['modem']}. It has {f['ports']} and manages up "
            f"to {f['devices']} devices. Power consumption is {f['power']}.")
        d.q(f"How many devices can one {model} gateway manage?", f["devices"])
        d.q(f"What modem is built into the {model}?", f["modem"])
        d.q(f"What is the power consumption of the {model} gateway?", f["power"])
        d.h("First login")
        d.p(f"Connect a laptop to the LAN port and open https://{f['ip']}:{f['admin']}. The gateway is ready about "
            f"{f['boot']} after power-on. Remote access uses {f['vpn']}.")
        d.q(f"What is the default IP address of the {model}?", f["ip"])
        d.q(f"On which port does the {model} serve its admin page?", f["admin"])
        d.q(f"How long does the {model} take to boot?", f["boot"])
        d.q(f"Which VPN does the {model} use for remote access?", f["vpn"])
        d.h("Logs")
        d.p(f"The {model} keeps {f['log']} of event logs on its internal memory.")
        d.q(f"How many days of event logs does the {model} keep?", f["log"])
        d.p(f"The {model} operates from {f['temp']} and takes {f['sim']}.")
        d.q(f"What is the operating temperature range of the {model} gateway?", f["temp"])
        d.q(f"What SIM card size does the {model} take?", f["sim"])


def release_notes() -> None:
    for version, f in FIRMWARE.items():
        d = doc(f"release-notes/firmware-{version}.md", f"Firmware {version} release notes")
        d.h(f"Firmware {version} release notes", 1)
        d.p(f"Firmware {version} was released on {f['date']} for the {f['models']}. The image is {f['size']}.")
        d.q(f"When was firmware {version} released?", f["date"])
        d.q(f"Which controller models does firmware {version} support?", f["models"])
        d.q(f"How large is the firmware {version} image?", f["size"])
        d.h("New")
        d.li(f"Firmware {version} adds {f['feature']}.")
        d.q(f"What is the main new feature of firmware {version}?", f["feature"])
        d.h("Fixed")
        d.li(f"Issue {f['fix']} is resolved.")
        d.q(f"Which issue number does firmware {version} fix?", f["fix"])
        d.h("Before you update")
        d.p(f"Firmware {version} needs bootloader {f['bootloader']} or later. The update takes about {f['duration']}; "
            f"do not remove power during the update.")
        d.q(f"Which bootloader version does firmware {version} require?", f["bootloader"])
        d.q(f"How long does the update to firmware {version} take?", f["duration"])
        d.h("Known issues")
        d.li(f"In firmware {version}, {f['known']}.")
        d.q(f"What is the known issue of firmware {version}?", f["known"])
        d.h("Removed and upgrade path")
        d.li(f"Firmware {version} removes {f['removed']}.", f"Controllers must run firmware {f['from']} before updating to {version}.")
        d.q(f"What does firmware {version} remove?", f["removed"])
        d.q(f"Which firmware must a controller run before updating to {version}?", f["from"])


def warranty_docs() -> None:
    for region, f in WARRANTY.items():
        d = doc(f"warranty/warranty-{region.lower()}.txt", f"Korvane warranty terms ({region})", "txt")
        d.p(f"Korvane warranty terms ({region})")
        d.p(f"Products sold in the {region} region carry a warranty of {f['years']} from the date of delivery. "
            f"Devices for this region are rated for {f['voltage']} mains adapters.")
        d.q(f"How long is the Korvane warranty in the {region} region?", f["years"])
        d.q(f"What mains voltage are Korvane adapters for the {region} region rated for?", f["voltage"])
        d.p(f"To return a device, write to {f['rma']} with the serial number. Returns go to our depot in {f['depot']}; "
            f"repaired units ship back within {f['shipping']}.")
        d.q(f"Which email address handles returns in the {region} region?", f["rma"])
        d.q(f"Where is the {region} repair depot?", f["depot"])
        d.q(f"How quickly are repaired units shipped back in the {region} region?", f["shipping"])
        d.p(f"The warranty can be extended for {f['extension']}, up to two additional years.")
        d.q(f"What does a warranty extension cost in the {region} region?", f["extension"])
        d.p(f"Claims must be made within {f['claim']} of discovering the fault. In the {region} region the warranty does not "
            f"cover {f['excluded']}, misuse or opened housings.")
        d.q(f"Within how many days of discovering a fault must a warranty claim be made in the {region} region?", f["claim"])
        d.q(f"Which kind of damage does the {region} warranty specifically exclude?", f["excluded"])
    d = doc("support/contact.html", "Contact Korvane support", "html")
    d.h("Contact Korvane support", 1)
    d.p(f"Email {COMPANY['support_email']} for all product questions.")
    d.q("Which email address reaches Korvane product support?", COMPANY["support_email"])
    d.table(("Region", "Phone and hours"), [(r, f"{f['phone']}, {f['hours']}") for r, f in WARRANTY.items()])
    for region, f in WARRANTY.items():
        d.q(f"What is the support phone number for the {region} region?", f["phone"])
        d.q(f"What are the support hours in the {region} region?", f["hours"])


def support_docs() -> None:
    d = doc("support/sla.md", "Support service levels")
    d.h("Support service levels", 1)
    d.p("Every support contract is either Standard or Premium. The tier sets how fast we respond and how fast we provide "
        "a workaround, by severity.")
    for tier, levels in SLA.items():
        d.h(f"{tier} tier")
        for sev, (first, workaround) in levels.items():
            d.li(f"{sev} ({tier}): first response within {first}, workaround within {workaround}.")
            d.q(f"What is the first response time for a {sev} ticket on the {tier} tier?", first)
            if sev != "Sev-3":
                d.q(f"Within what time is a workaround due for a {sev} ticket on the {tier} tier?", workaround)

    d = doc("support/rma-procedure.txt", "Returning a device (RMA procedure)", "txt")
    d.p("Returning a device (RMA procedure)")
    d.p("1. Open a ticket and quote the serial number printed on the side label. 2. Wait for the RMA number, which starts "
        "with RMA- and has eight digits. 3. Pack the device in antistatic foil. 4. Write the RMA number on the outside of "
        "the box. 5. Ship it to the depot of your region within 30 days, after which the RMA number expires.")
    d.q("How many digits does a Korvane RMA number have?", "eight digits")
    d.q("Within how many days must a device be shipped after the RMA number is issued?", "30 days")
    d.q("What must a returned device be packed in?", "antistatic foil")
    d.p("Units returned without an RMA number are refused at the depot. A bench test fee of EUR 95 applies when no fault "
        "is found.")
    d.q("What fee applies when a returned unit has no fault?", "EUR 95")

    d = doc("manuals/pc-series-quick-start.txt", "PC series quick start", "txt")
    d.p("PC series quick start")
    d.p("This card covers the PC-200, PC-220 and PC-250. Step 1: mount the controller and connect protective earth first. "
        "Step 2: wire the pump contactors to the relay outputs. Step 3: connect the level sensor to input AI1. "
        "Step 4: apply power and choose the station type in the setup wizard. Step 5: run the pumps once in manual mode "
        "to check the direction of rotation.")
    d.q("Which input does the level sensor connect to on a PC series controller?", "AI1")
    d.q("What must be connected first when installing a PC series controller?", "protective earth")
    d.q("In which mode are the pumps run to check the direction of rotation?", "manual mode")

    d = doc("support/troubleshooting-pc-series.md", "Troubleshooting the PC series")
    d.h("Troubleshooting the PC series", 1)
    d.p("Most alarms on PC series controllers come from the installation, not the controller. Read the code on the display "
        "and follow the table below before opening a ticket.")
    d.table(("Code", "Meaning"), [(c, m) for c, (m, _) in ERROR_CODES.items()])
    for code, (meaning, action) in ERROR_CODES.items():
        d.q(f"What does alarm {code} on a PC series controller mean?", meaning)
    d.h("Remedies")
    for code, (meaning, action) in ERROR_CODES.items():
        d.li(f"For {code}, {action}.")
    d.q("What is the remedy for alarm E-47?", "check the sensor cable and the M12 connector")
    d.q("What is the remedy for alarm E-23?", "open the bypass valve and check the pressure sensor")

    d = doc("support/maintenance-schedule.pdf", "Maintenance schedule for pumping stations", "pdf")
    d.h("Maintenance schedule for pumping stations", 1)
    d.p("Inspect the controller cabinet every 3 months and clean its air filter. Replace the backup battery of the "
        "controller clock every 5 years. Check the tightness of terminal screws once a year. Test the high-level alarm "
        "float every 6 months by lifting it by hand.")
    d.q("How often should the controller cabinet be inspected?", "every 3 months")
    d.q("How often is the backup battery of the controller clock replaced?", "every 5 years")
    d.q("How often should the high-level alarm float be tested?", "every 6 months")

    d = doc("support/firmware-downloads.html", "Firmware downloads", "html")
    d.h("Firmware downloads", 1)
    d.p("Firmware images are published on the Korvane portal on the first Tuesday of each month. Each image is signed; "
        "controllers reject images whose signature does not match.")
    d.q("On which day are Korvane firmware images published?", "the first Tuesday of each month")
    d.table(("Version", "Released"), [(v, f["date"]) for v, f in FIRMWARE.items()])
    d.p("Updates are installed from a USB stick formatted as FAT32 with the image in the root folder.")
    d.q("How must the USB stick for a firmware update be formatted?", "FAT32")


def company_docs() -> None:
    c = COMPANY
    d = doc("company/about.md", "About Korvane Fluidics")
    d.h("About Korvane Fluidics", 1)
    d.p(f"{c['name']} was founded in {c['founded']} in {c['hq']}, where it still has its head office. Its {c['employees']} "
        f"employees build controllers in the plants of {c['plants']}. The chief executive is {c['ceo']}.")
    d.q("In which year was Korvane Fluidics founded?", c["founded"])
    d.q("Where is the head office of Korvane Fluidics?", c["hq"])
    d.q("Who is the chief executive of Korvane Fluidics?", c["ceo"])
    d.q("How many employees does Korvane Fluidics have?", c["employees"])
    d.q("Where are Korvane's plants?", c["plants"])

    d = doc("news/2026-product-update.html", "Product update 2026", "html")
    d.h("Product update 2026", 1)
    d.p("In 2026 Korvane retires the PC-200; orders are accepted until 30 June 2026 and spare parts remain available until "
        "2031. The PC-220 is the recommended replacement.")
    d.q("Until when are orders for the PC-200 accepted?", "30 June 2026")
    d.q("Until which year are PC-200 spare parts available?", "2031")
    d.q("What is the recommended replacement for the PC-200?", "PC-220")

    d = doc("careers/benefits.html", "Working at Korvane: benefits", "html")
    d.h("Working at Korvane: benefits", 1)
    d.p("Employees receive a yearly training budget of EUR 1,500 and a wellness allowance of EUR 400. The company "
        "pension contribution is 6 percent of base salary.")
    d.q("What is the yearly training budget for Korvane employees?", "EUR 1,500")
    d.q("How large is the wellness allowance at Korvane?", "EUR 400")
    d.q("What is the company pension contribution at Korvane?", "6 percent of base salary")

    d = doc("training/installer-certification.pdf", "Installer certification programme", "pdf")
    d.h("Installer certification programme", 1)
    d.p("Certified installers complete a two-day course at the Tromsvik training centre and pass a practical exam with at "
        "least 80 percent. The certificate is valid for 3 years and allows installers to extend customer warranties by "
        "one year.")
    d.q("How long is the installer certification course?", "two-day course")
    d.q("What score is needed to pass the installer exam?", "80 percent")
    d.q("How long is an installer certificate valid?", "3 years")

    d = doc("safety/electrical-safety.pdf", "Electrical safety rules", "pdf")
    d.h("Electrical safety rules", 1)
    d.p("Only qualified electricians may open a controller cabinet. Isolate the supply and wait 5 minutes for the "
        "capacitors to discharge before touching the terminals. Lockout tags are yellow and must carry the worker's name.")
    d.q("How long must one wait after isolating the supply before touching the terminals?", "5 minutes")
    d.q("What colour are Korvane lockout tags?", "yellow")

    d = doc("policies/code-of-conduct.pdf", "Code of conduct", "pdf")
    d.h("Code of conduct", 1)
    d.p("Gifts from suppliers worth more than EUR 50 must be declared to the compliance office within 10 days. Concerns "
        "can be reported anonymously through the ethics line, which is run by an external provider.")
    d.q("Above what value must supplier gifts be declared?", "EUR 50")
    d.q("Within how many days must a gift be declared?", "10 days")


def policy_docs() -> None:
    d = doc("policies/travel-policy.md", "Travel policy")
    d.h("Travel policy", 1)
    d.p("Book all trips through the travel desk at least 14 days before departure. Flights under 6 hours are booked in "
        "economy class; longer flights may be booked in premium economy.")
    d.q("How many days before departure must trips be booked?", "14 days")
    d.q("Which class is used for flights under 6 hours?", "economy class")
    d.h("Per diem")
    d.table(("Region", "Per diem"), [("Nordics", "EUR 75"), ("Central Europe", "EUR 60"), ("United States", "USD 85")])
    d.q("What is the per diem for travel in the United States?", "USD 85")
    d.q("What is the per diem in Central Europe?", "EUR 60")
    d.p("Hotels are capped at EUR 180 per night in capital cities and EUR 140 elsewhere.")
    d.q("What is the hotel cap per night in capital cities?", "EUR 180")

    d = doc("policies/expense-policy.md", "Expense policy")
    d.h("Expense policy", 1)
    d.p("Submit expense claims within 30 days of the expense. Receipts are required for every item above EUR 25. Claims "
        "above EUR 2,000 need the approval of a director.")
    d.q("Within how many days must expense claims be submitted?", "30 days")
    d.q("Above what amount is a receipt required for an expense item?", "EUR 25")
    d.q("Who must approve expense claims above EUR 2,000?", "a director")
    d.p("Mileage for private cars is reimbursed at EUR 0.30 per kilometre.")
    d.q("At what rate is private car mileage reimbursed?", "EUR 0.30 per kilometre")

    d = doc("policies/security-policy.md", "Information security policy")
    d.h("Information security policy", 1)
    d.p("Passwords have at least 14 characters. Multi-factor authentication is mandatory for email, the VPN and the "
        "customer portal. Laptops are encrypted with BitLocker.")
    d.q("What is the minimum password length at Korvane?", "14 characters")
    d.q("What encrypts Korvane laptops?", "BitLocker")
    d.p("Report a suspected security incident to security@korvane.example within 2 hours of noticing it. Lost devices "
        "are wiped remotely.")
    d.q("Within how many hours must a security incident be reported?", "2 hours")
    d.q("Which address receives security incident reports?", "security@korvane.example")

    d = doc("policies/leave-policy.md", "Leave policy")
    d.h("Leave policy", 1)
    d.p("Full-time employees have 27 days of annual leave. Up to 5 unused days can be carried over to the next year and "
        "must be taken by 31 March. Parental leave is paid for 16 weeks.")
    d.q("How many days of annual leave do full-time employees have?", "27 days")
    d.q("How many unused leave days can be carried over?", "5 unused days")
    d.q("By when must carried-over leave be taken?", "31 March")
    d.q("For how many weeks is parental leave paid?", "16 weeks")

    d = doc("policies/remote-work.txt", "Remote work guideline", "txt")
    d.p("Remote work guideline")
    d.p("Office staff may work remotely up to 2 days per week after agreeing with their manager. The company pays a "
        "one-off home office allowance of EUR 300. Core hours are 10:00 to 15:00.")
    d.q("How many days per week may office staff work remotely?", "2 days per week")
    d.q("How large is the home office allowance?", "EUR 300")
    d.q("What are the core hours for remote work?", "10:00 to 15:00")


def more_docs() -> None:
    d = doc("policies/procurement-policy.md", "Procurement policy")
    d.h("Procurement policy", 1)
    d.p("Purchases above EUR 10,000 need three written quotes. Purchases above EUR 50,000 go to the procurement board, "
        "which meets every second Thursday. The preferred supplier list is reviewed every October.")
    d.q("Above what amount are three written quotes needed for a purchase?", "EUR 10,000")
    d.q("Which purchases go to the procurement board?", "Purchases above EUR 50,000")
    d.q("How often does the procurement board meet?", "every second Thursday")
    d.q("When is the preferred supplier list reviewed?", "every October")
    d.p("Payment terms for suppliers are 45 days net. Suppliers must accept the supplier code of conduct before the first order.")
    d.q("What are the standard payment terms for suppliers?", "45 days net")

    d = doc("support/customer-onboarding.md", "Customer onboarding")
    d.h("Customer onboarding", 1)
    d.p("New customers get portal accounts within 48 hours of the first order. Each site receives two remote training "
        "sessions of 90 minutes. The onboarding manager is Tomas Lindqvist.")
    d.q("How soon do new customers get portal accounts?", "within 48 hours")
    d.q("How many remote training sessions does each new site receive?", "two remote training sessions")
    d.q("How long is a customer training session?", "90 minutes")
    d.q("Who is the customer onboarding manager?", "Tomas Lindqvist")

    d = doc("manuals/pc-series-wiring.pdf", "PC series wiring guide", "pdf")
    d.h("PC series wiring guide", 1)
    d.p("Use copper conductors rated for 75 degrees or more. The conductor cross-section and the relay contact rating "
        "depend on the model.")
    for model, f in CONTROLLERS.items():
        d.h(f"{model} wiring", 2)
        d.p(f"Wire the {model} supply with conductors of {f['wire']}. Its relay contacts are rated {f['relay_rating']}.")
        d.q(f"What conductor cross-section is used for the {model} supply?", f["wire"])
        d.q(f"What are the relay contacts of the {model} rated for?", f["relay_rating"])


def restricted_docs() -> None:
    d = doc("hr/salary-bands-2026.md", "Salary bands 2026", access=["hr"])
    d.h("Salary bands 2026", 1)
    d.p("Band E2 engineers earn between EUR 58,000 and EUR 69,000 a year. Band E3 engineers earn between EUR 70,000 and "
        "EUR 84,000. Bands are reviewed every April.")
    d.q("What is the salary range for band E2 engineers?", "between EUR 58,000 and EUR 69,000")
    d.q("What is the salary range for band E3 engineers?", "between EUR 70,000 and EUR 84,000")
    d.q("When are salary bands reviewed?", "every April")

    d = doc("hr/performance-reviews.txt", "Performance review process", "txt", access=["hr"])
    d.p("Performance review process")
    d.p("Reviews take place twice a year, in June and December. Ratings use a five-point scale, and a rating of 2 or "
        "below triggers a 90-day improvement plan.")
    d.q("How often do performance reviews take place?", "twice a year")
    d.q("How long is the improvement plan after a low rating?", "90-day improvement plan")
    d.q("In which months do performance reviews take place?", "June and December")

    d = doc("internal/roadmap-2027.md", "Product roadmap 2027", access=["internal"])
    d.h("Product roadmap 2027", 1)
    d.p("The PC-300 controller, code name Skarv, is planned for the third quarter of 2027 with a 72 V supply. The GW-7 "
        "gateway adds 5G and is planned for the first quarter of 2027.")
    d.q("What is the code name of the PC-300 controller?", "Skarv")
    d.q("When is the PC-300 planned?", "the third quarter of 2027")
    d.q("What does the GW-7 gateway add?", "5G")

    d = doc("internal/pricing-discounts.md", "Dealer pricing and discounts", access=["internal", "finance"])
    d.h("Dealer pricing and discounts", 1)
    d.p("Gold dealers receive a 22 percent discount on list prices, silver dealers 15 percent. Discounts above 30 percent "
        "need approval from the finance director, Marek Holub.")
    d.q("What discount do gold dealers receive?", "22 percent")
    d.q("What discount do silver dealers receive?", "15 percent")
    d.q("Who approves discounts above 30 percent?", "Marek Holub")

    d = doc("internal/incident-2026-03-postmortem.txt", "Incident postmortem: portal outage, March 2026", "txt", access=["internal"])
    d.p("Incident postmortem: portal outage, March 2026")
    d.p("On 12 March 2026 the customer portal was unavailable for 3 hours 40 minutes after an expired TLS certificate. "
        "Certificates are now renewed automatically 21 days before expiry.")
    d.q("How long was the customer portal unavailable in March 2026?", "3 hours 40 minutes")
    d.q("What caused the portal outage of 12 March 2026?", "an expired TLS certificate")
    d.q("How many days before expiry are certificates now renewed?", "21 days")


def kb_articles() -> None:
    def article(kid: str, title: str, text: str, updated: str, qa: list[tuple[str, str]], access: list[str] | None = None) -> None:
        record = {"id": kid, "title": title, "text": text, "updated": updated}
        if access:
            record["access"] = access
        KB.append({"record": record, "qa": qa})

    pc = CONTROLLERS
    article("kb-101", "PC-220 does not start after a power cut",
            f"If a PC-220 stays dark after a power cut, check the {pc['PC-220']['fuse']} supply fuse first. If the fuse is intact, "
            "measure the supply at terminals X1:1 and X1:2; it must read between 21.6 and 26.4 V.", "2026-04-02",
            [("Which terminals are measured when a PC-220 stays dark after a power cut?", "X1:1 and X1:2"),
             ("What supply reading is acceptable on a PC-220 at terminals X1:1 and X1:2?", "between 21.6 and 26.4 V")])
    article("kb-102", "Changing the Modbus address of a PC-250",
            f"The PC-250 ships with Modbus address {pc['PC-250']['modbus']}. Change it under Settings > Communication > Address; "
            "the new address applies after a restart.", "2026-01-19",
            [("Where is the Modbus address of a PC-250 changed?", "Settings > Communication > Address"),
             ("When does a new PC-250 Modbus address apply?", "after a restart")])
    article("kb-103", "Firmware update fails at 80 percent",
            "An update that stops at 80 percent almost always means the bootloader is too old. Install bootloader 2.0 from "
            "the portal, then repeat the firmware update. The controller keeps running the old firmware until the new image is "
            "verified.", "2025-11-08",
            [("What usually causes a firmware update to stop at 80 percent?", "the bootloader is too old"),
             ("Which firmware does a controller run until a new image is verified?", "the old firmware")])
    article("kb-104", "GW-5 shows no cellular signal",
            "Check that the SIM card is inserted with the cut corner facing the antenna. The GW-5 needs a signal of at least "
            "-105 dBm; below that, fit the external antenna KF-90211.", "2026-02-27",
            [("What minimum cellular signal does the GW-5 need?", "-105 dBm"),
             ("Which external antenna is fitted when the GW-5 signal is too weak?", "KF-90211")])
    article("kb-105", "LS-10 reading jumps in foaming water",
            "Foam on the surface makes the LS-10 reading jump. Enable the damping filter and set it to 8 seconds. If the "
            "reading still jumps, fit the stilling tube KF-31090.",
            "2025-09-30", [("What damping setting is recommended for an LS-10 in foaming water?", "8 seconds"),
                           ("Which part steadies an LS-10 reading that still jumps with damping on?", "stilling tube KF-31090")])
    article("kb-106", "Resetting the GW-3 admin password",
            "Hold the recessed button on the GW-3 for 15 seconds to reset the admin password to the one printed on the "
            "label. Network settings are kept.", "2026-03-11",
            [("How long is the GW-3 button held to reset the admin password?", "15 seconds"),
             ("Are network settings kept when the GW-3 admin password is reset?", "Network settings are kept")])
    article("kb-107", "PS-40 zero offset after installation",
            "A zero offset of up to 0.2 bar on a new PS-40 comes from mounting torque. Run the zero adjustment with the "
            "line depressurised. Tighten the PS-40 to 25 Nm with a 27 mm spanner.", "2025-12-05",
            [("What zero offset can mounting torque cause on a new PS-40?", "0.2 bar"),
             ("To what torque is a PS-40 tightened?", "25 Nm")])
    article("kb-108", "Pump alternation settings on the PC-200",
            "On the PC-200 with firmware 3.1 or later, pumps alternate after 24 running hours by default. The interval can "
            "be set between 1 and 168 hours.", "2024-06-21",
            [("After how many running hours do PC-200 pumps alternate by default?", "24 running hours"),
             ("What range can the PC-200 alternation interval be set to?", "between 1 and 168 hours")])
    article("kb-109", "Sev-1 escalation path",
            "Sev-1 tickets that miss their first response target are escalated to the duty manager on extension 4410, then "
            "to the head of support after 1 hour.", "2026-05-14",
            [("Which extension reaches the duty manager for Sev-1 escalations?", "4410"),
             ("After how long is a Sev-1 escalated to the head of support?", "1 hour")], access=["internal"])
    article("kb-110", "Exporting alarm history from the PC-250",
            "Alarm history on the PC-250 is exported as CSV to a USB stick under Service > Export. The controller stores the "
            "last 2,000 alarms.", "2026-06-30",
            [("How many alarms does the PC-250 store?", "2,000 alarms"),
             ("In which format is PC-250 alarm history exported?", "CSV")])


# --- rendering ---------------------------------------------------------------------------


def render_md(d: Doc) -> str:
    out = []
    if d.access:
        out.append(f"---\ntitle: {d.title}\naccess: [{', '.join(d.access)}]\n---\n")
    rows: list[str] = []
    for kind, text in d.blocks:
        if kind != "row" and rows:
            out.append(_md_table(rows))
            rows = []
        if kind == "row":
            rows.append(text)
        elif kind.startswith("h"):
            out.append("#" * int(kind[1]) + " " + text + "\n")
        elif kind == "li":
            out.append(f"- {text}")
        else:
            out.append(text + "\n")
    if rows:
        out.append(_md_table(rows))
    return "\n".join(out).replace("\n- ", "\n- ").strip() + "\n"


def _md_table(rows: list[str]) -> str:
    cells = [r.split("|") for r in rows]
    lines = [f"| {cells[0][0]} | {cells[0][1]} |", "| --- | --- |"] + [f"| {a} | {b} |" for a, b in cells[1:]]
    return "\n".join(lines) + "\n"


def render_txt(d: Doc) -> str:
    return "\n\n".join(text.replace("|", ": ") for kind, text in d.blocks) + "\n"


HTML_TOP = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>{title} | Korvane Fluidics</title>{meta}
<style>body{{font-family:sans-serif}} .cookie-banner{{position:fixed;bottom:0}}</style>
<script>window.dataLayer=window.dataLayer||[];function gtag(){{dataLayer.push(arguments)}}gtag('js', new Date());</script>
</head><body>
<header><a href="/">Korvane Fluidics</a> <a href="/products">Products</a> <a href="/support">Support</a></header>
<nav><ul><li><a href="/products/controllers">Controllers</a></li><li><a href="/products/sensors">Sensors</a></li><li><a href="/products/gateways">Gateways</a></li></ul></nav>
<div class="breadcrumb">Home / {title}</div>
<div class="cookie-banner">We use cookies to measure traffic. <a href="/privacy">Privacy policy</a></div>
<main>
"""
HTML_BOTTOM = """</main>
<footer>Copyright 2026 Korvane Fluidics AS. Tromsvik, Norway. <a href="/imprint">Imprint</a></footer>
</body></html>
"""


def render_html(d: Doc) -> str:
    meta = f'\n<meta name="access" content="{",".join(d.access)}">' if d.access else ""
    out = [HTML_TOP.format(title=d.title, meta=meta)]
    rows: list[str] = []
    items: list[str] = []
    for kind, text in d.blocks + [("end", "")]:
        if kind != "row" and rows:
            cells = [r.split("|") for r in rows]
            body = "".join(f"<tr><td>{a}</td><td>{b}</td></tr>" for a, b in cells[1:])
            out.append(f"<table><tr><th>{cells[0][0]}</th><th>{cells[0][1]}</th></tr>{body}</table>")
            rows = []
        if kind != "li" and items:
            out.append("<ul>" + "".join(f"<li>{i}</li>" for i in items) + "</ul>")
            items = []
        if kind == "row":
            rows.append(text)
        elif kind == "li":
            items.append(text)
        elif kind.startswith("h"):
            out.append(f"<{kind}>{text}</{kind}>")
        elif kind == "p":
            out.append(f"<p>{text}</p>")
    out.append(HTML_BOTTOM)
    return "\n".join(out)


def render_pdf(d: Doc) -> bytes:
    from fpdf import FPDF

    pdf = FPDF()
    pdf.set_title(d.title)
    pdf.set_creation_date(datetime(2026, 1, 1, tzinfo=timezone.utc))
    pdf.add_page()
    for kind, text in d.blocks:
        text = pdf_text(text).replace("|", ": ")
        if kind.startswith("h"):
            pdf.set_font("Helvetica", "B", 14 if kind == "h1" else 12)
            pdf.multi_cell(0, 8, text)
        else:
            pdf.set_font("Helvetica", size=11)
            pdf.multi_cell(0, 6, ("- " if kind == "li" else "") + text)
        pdf.ln(2)
    return bytes(pdf.output())


def pdf_text(value: str) -> str:
    """A value as it reads in a PDF (which uses the core fonts' character set)."""
    return value.replace("°", " deg").replace("±", "+/-").replace("²", "2")


def main() -> None:
    for build in (controller_manuals, controller_datasheets, sensor_docs, gateway_docs, release_notes, warranty_docs,
                  support_docs, company_docs, policy_docs, more_docs, restricted_docs, kb_articles):
        build()
    shutil.rmtree(CORPUS, ignore_errors=True)
    qa_lines = []
    for d in DOCS:
        path = CORPUS / d.path
        path.parent.mkdir(parents=True, exist_ok=True)
        if d.kind == "pdf":
            path.write_bytes(render_pdf(d))
        else:
            path.write_text({"md": render_md, "txt": render_txt, "html": render_html}[d.kind](d), encoding="utf-8")
        if d.access and d.kind in ("txt", "pdf"):
            path.with_name(path.name + ".meta.yaml").write_text(f"access: [{', '.join(d.access)}]\n", encoding="utf-8")
        for question, answer in d.qa:
            qa_lines.append({"question": question, "answer": pdf_text(answer) if d.kind == "pdf" else answer, "source": d.path})
    kb = CORPUS / "kb" / "articles.jsonl"
    kb.parent.mkdir(parents=True, exist_ok=True)
    kb.write_text("".join(json.dumps(a["record"], ensure_ascii=False) + "\n" for a in KB), encoding="utf-8")
    for a in KB:
        qa_lines.extend({"question": q, "answer": ans, "source": a["record"]["id"]} for q, ans in a["qa"])
    with QA_FILE.open("w", encoding="utf-8") as f:
        for n, line in enumerate(qa_lines, start=1):
            f.write(json.dumps({"id": f"q{n:04d}", **line}, ensure_ascii=False) + "\n")
    print(f"wrote {len(DOCS)} files + kb/articles.jsonl ({len(KB)} articles) to {CORPUS} and {len(qa_lines)} questions to {QA_FILE}")


if __name__ == "__main__":
    main()
