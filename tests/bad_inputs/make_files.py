"""Write the small test input files of ``tests/bad_inputs/``.

Run ``python tests/bad_inputs/make_files.py [folder]`` (default: this folder). The files
are tiny and deterministic; the binary ones (.xlsx, .sav, .dta, .parquet) are written
from the same tables as the CSV files so tests can compare every reader with the CSV.

Layout
------
``good/``
    A valid set (alliance, outcome, clients) in the input contract: 10 clients, two
    therapists, two sessions each, every covariate combination shared by 5 clients. The
    alliance rows are written in reverse order (row order carries no meaning). The same
    tables as ``alliance.xlsx``, ``alliance.parquet``, ``outcome.sav`` (item value labels,
    one answer stored as the user-missing code -9), ``outcome.dta``, ``clients.dta`` and
    ``clients.sav`` (covariates stored as labelled codes).
``<slot>_<rule>.<ext>``
    One file per rule, replacing the good file of ``slot`` (alliance, outcome or
    clients). The identifying values written into the anonymity cases are listed in
    :data:`SECRETS` so the tests can check that no message echoes them.
"""

from __future__ import annotations

import datetime as dt
import re
import sys
import zipfile
from collections.abc import Hashable
from pathlib import Path
from typing import Any

import pandas as pd

HERE = Path(__file__).parent
CLIENTS = [f"C{i:02d}" for i in range(1, 11)]
THERAPIST = {c: ("T1" if i < 5 else "T2") for i, c in enumerate(CLIENTS)}
SESSIONS = (1, 2)
FIXED_TIME = dt.datetime(2020, 1, 1)

#: Identifying values planted in the anonymity test files (file name -> values).
SECRETS: dict[str, list[str]] = {
    "clients_content_email.csv": ["ann.jones@example.org", "b.smith@example.com"],
    "clients_content_phone.csv": ["07700 900123", "+44 7700 900456"],
    "clients_content_postcode.csv": ["SW1A 1AA", "M1 1AE"],
    "clients_content_zip.csv": ["02139", "10001"],
    "clients_content_nhs_number.csv": ["9434765919", "4010232137"],
    "clients_content_ssn.csv": ["123-45-6789", "987-65-4321"],
    "clients_content_date.csv": ["2023-01-15", "15/02/2023"],
    "clients_content_titled_name.csv": ["Dr Ann Jones"],
    "clients_content_person_name.csv": [
        "Ann Jones", "Bob Smith", "Cara Patel", "Dev Okafor", "Eve Brown",
        "Finn Walsh", "Gita Rao", "Hugo Meyer", "Iris Chen", "Jon Evans",
    ],
    "clients_content_free_text.csv": [
        "Client said her sister in Leeds looks after the children on Tuesdays",
    ],
    "clients_content_free_text_words.csv": [f"talked about work stress week {w}" for w in
                                            ("one", "two", "three", "four", "five", "six",
                                             "seven", "eight", "nine", "ten")],
    "alliance_content_person_name_in_id.csv": ["Ann Jones", "Bob Smith"],
    "clients_value_labels.sav": ["Dr Ann Jones", "Dr Bob Smith"],
}


def _item(client: int, session: int, item: int) -> int:
    return 1 + (client + session + item) % 5


def alliance_table() -> pd.DataFrame:
    """The good alliance table (WAI-SR items), sorted by client and session."""
    rows = []
    for i, client in enumerate(CLIENTS):
        for s in SESSIONS:
            row: dict[str, object] = {"client_id": client, "therapist_id": THERAPIST[client],
                                      "session": s}
            row.update({f"wai_sr_{k}": _item(i, s, k) for k in range(1, 13)})
            rows.append(row)
    return pd.DataFrame(rows)


def outcome_table() -> pd.DataFrame:
    """The good outcome table (SWEMWBS items); one answer of C03 session 2 is missing."""
    rows = []
    for i, client in enumerate(CLIENTS):
        for s in SESSIONS:
            row: dict[str, object] = {"client_id": client, "session": s}
            row.update({f"swemwbs_{k}": _item(i, s, k + 3) for k in range(1, 8)})
            rows.append(row)
    frame = pd.DataFrame(rows)
    items = [c for c in frame.columns if c.startswith("swemwbs")]
    frame[items] = frame[items].astype("Int64")
    frame.loc[(frame["client_id"] == "C03") & (frame["session"] == 2), "swemwbs_4"] = pd.NA
    return frame


def clients_table() -> pd.DataFrame:
    """The good clients table: two covariate combinations of 5 clients each."""
    return pd.DataFrame({
        "client_id": CLIENTS,
        "approach": ["CBT"] * 5 + ["humanistic"] * 5,
        "modality": ["in person"] * 5 + ["video"] * 5,
    })


def _csv(frame: pd.DataFrame, path: Path) -> None:
    frame.to_csv(path, index=False, lineterminator="\n")


def _text(path: Path, text: str) -> None:
    path.write_text(text, encoding="utf-8", newline="\n")


def _xlsx(frame: pd.DataFrame, path: Path) -> None:
    """Write an .xlsx file with fixed timestamps (same bytes on every run)."""
    import openpyxl

    wb = openpyxl.Workbook()
    ws = wb.active
    ws.title = "data"
    ws.append(list(frame.columns))
    for row in frame.itertuples(index=False):
        ws.append([None if pd.isna(v) else v for v in row])
    wb.properties.created = FIXED_TIME
    wb.properties.creator = "make_files.py"
    tmp = path.with_suffix(".tmp.xlsx")
    wb.save(tmp)
    # openpyxl stamps the save time into docProps/core.xml and the zip member dates:
    # rewrite both so the file is byte-reproducible.
    stamp = re.compile(rb"(<dcterms:modified[^>]*>)[^<]*(</dcterms:modified>)")
    with zipfile.ZipFile(tmp) as src, zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as dst:
        for info in sorted(src.infolist(), key=lambda i: i.filename):
            data = stamp.sub(rb"\g<1>2020-01-01T00:00:00Z\g<2>", src.read(info.filename))
            fixed = zipfile.ZipInfo(info.filename, date_time=(2020, 1, 1, 0, 0, 0))
            fixed.compress_type = zipfile.ZIP_DEFLATED
            dst.writestr(fixed, data)
    tmp.unlink()


def _sav(frame: pd.DataFrame, path: Path, **kwargs: object) -> None:
    """Write an SPSS file with a fixed creation date and time in its header.

    pyreadstat stamps the current time into the header (bytes 92-108: ``dd mmm yy`` and
    ``hh:mm:ss``); overwrite it so the file is byte-reproducible.
    """
    import pyreadstat

    pyreadstat.write_sav(frame, str(path), **kwargs)  # type: ignore[arg-type]
    data = bytearray(path.read_bytes())
    assert data[:4] in (b"$FL2", b"$FL3"), "not an SPSS system file"
    data[92:109] = b"01 Jan 0000:00:00"
    path.write_bytes(bytes(data))


def write_good(folder: Path) -> None:
    """The good set in every format."""
    folder.mkdir(parents=True, exist_ok=True)
    alliance, outcome, clients = alliance_table(), outcome_table(), clients_table()
    _csv(alliance.iloc[::-1], folder / "alliance.csv")
    _csv(outcome, folder / "outcome.csv")
    _csv(clients, folder / "clients.csv")
    _xlsx(alliance, folder / "alliance.xlsx")
    alliance.to_parquet(folder / "alliance.parquet", index=False)

    items = [c for c in outcome.columns if c.startswith("swemwbs")]
    outcome = outcome.astype(dict.fromkeys(items, "float64"))  # SPSS/Stata store doubles
    sav = outcome.copy()
    sav.loc[sav[items[3]].isna(), items[3]] = -9.0
    labels = {1: "None of the time", 2: "Rarely", 3: "Some of the time", 4: "Often",
              5: "All of the time"}
    _sav(
        sav, folder / "outcome.sav",
        variable_value_labels={c: labels for c in items},
        missing_ranges={items[3]: [-9.0]},
    )
    outcome.to_stata(folder / "outcome.dta", write_index=False, version=118,
                     time_stamp=FIXED_TIME)

    codes = {"approach": {"CBT": 1, "humanistic": 2}, "modality": {"in person": 1, "video": 2}}
    coded = clients.copy()
    for column, mapping in codes.items():
        coded[column] = coded[column].map(mapping).astype("int64")
    value_labels: dict[Hashable, dict[float, str]] = {
        c: {float(v): k for k, v in m.items()} for c, m in codes.items()
    }
    coded.to_stata(folder / "clients.dta", write_index=False, version=118,
                   time_stamp=FIXED_TIME, value_labels=value_labels)
    _sav(coded, folder / "clients.sav", variable_value_labels=value_labels)


def _set(frame: pd.DataFrame, rows: Any, column: str, value: Any) -> pd.DataFrame:
    """A copy of ``frame`` with ``frame.loc[rows, column] = value`` (column as object)."""
    out = frame.copy()
    if isinstance(value, str) or value is None:
        out[column] = out[column].astype(object)
    out.loc[rows, column] = value
    return out


def write_bad(folder: Path) -> None:
    """One small file per rule."""
    folder.mkdir(parents=True, exist_ok=True)
    alliance, outcome, clients = alliance_table(), outcome_table(), clients_table()
    header = ",".join(alliance.columns)
    first = ",".join(str(v) for v in alliance.iloc[0])

    # --- reading
    _text(folder / "alliance_empty_file.csv", "")
    _text(folder / "alliance_no_data_rows.csv", header + "\n")
    _text(folder / "alliance_unreadable_file.csv", f"{header}\n{first}\n{first},5,5\n")
    _text(folder / "alliance_duplicate_column.csv",
          header + ",session\n" + "\n".join(
              ",".join(str(v) for v in row) + f",{row[2]}" for row in alliance.values) + "\n")
    _text(folder / "alliance_unsupported_format.json", '{"client_id": ["C01"]}\n')
    _text(folder / "alliance_unreadable_file.xlsx", "this is not a workbook\n")

    # --- contract
    _csv(alliance.rename(columns={"therapist_id": "therapist"}),
         folder / "alliance_missing_column.csv")
    _csv(alliance.assign(wai_sr_13=3), folder / "alliance_unknown_item.csv")
    _csv(_set(alliance, 4, "therapist_id", None), folder / "alliance_missing_value.csv")
    _csv(_set(alliance, 5, "wai_sr_3", "four"), folder / "alliance_not_a_number.csv")
    _csv(_set(alliance, 3, "session", "2.5"), folder / "alliance_not_whole_number.csv")
    _csv(_set(alliance, alliance["session"] == 1, "session", 0),
         folder / "alliance_session_below_1.csv")
    bad_range = _set(_set(alliance, [2, 9], "wai_sr_5", [7, -99]), 9, "wai_sr_6", 0)
    _csv(bad_range, folder / "alliance_out_of_range.csv")
    _csv(alliance.assign(rater=["client"] * 19 + ["supervisor"]),
         folder / "alliance_invalid_rater.csv")
    _csv(pd.concat([alliance, alliance.iloc[[6]]], ignore_index=True),
         folder / "alliance_duplicate_row.csv")
    _csv(_set(alliance, 1, "therapist_id", "T2"), folder / "alliance_several_therapists.csv")
    _csv(pd.concat([alliance.assign(rater="client"),
                    alliance.assign(rater="therapist")], ignore_index=True),
         folder / "alliance_raters.csv")
    prescored = alliance[["client_id", "therapist_id", "session"]].assign(
        goal=3.5, task=4.0, bond=4.25)
    _csv(prescored, folder / "alliance_prescored.csv")
    _csv(_set(prescored, 3, "goal", 6.5), folder / "alliance_prescored_out_of_range.csv")

    _csv(outcome[["client_id", "session"]].assign(swemwbs=[20.5] * 19 + [36.0]),
         folder / "outcome_out_of_range.csv")
    _csv(_set(outcome, 0, "swemwbs_2", "three"), folder / "outcome_not_a_number.csv")
    _csv(pd.concat([outcome, outcome.iloc[[0]]], ignore_index=True),
         folder / "outcome_duplicate_row.csv")
    _csv(outcome.assign(client_id=outcome["client_id"].str[1:].astype(int).astype(str)),
         folder / "outcome_ids_do_not_match.csv")
    extra = outcome.iloc[[0, 1]].assign(client_id="C99")
    _csv(pd.concat([outcome, extra], ignore_index=True), folder / "outcome_no_alliance_rows.csv")

    _csv(pd.concat([clients, clients.iloc[[2]]], ignore_index=True),
         folder / "clients_duplicate_row.csv")
    _csv(pd.concat([clients, pd.DataFrame({"client_id": ["C77"], "approach": ["CBT"],
                                           "modality": ["in person"]})], ignore_index=True),
         folder / "clients_no_alliance_rows.csv")
    _csv(_set(clients, 0, "modality", "video"), folder / "clients_k_anonymity.csv")

    # --- anonymisation: column names (values harmless codes)
    for name, column in [
        ("person_name", "Client Name"), ("email_address", "E-mail"),
        ("phone_number", "Mobile"), ("postcode", "Postcode"), ("address", "home_address"),
        ("birth_date", "DOB"), ("calendar_date", "intake_date"),
        ("national_id", "NHSNumber"), ("free_text", "Comments"),
    ]:
        _csv(clients.assign(**{column: "x"}), folder / f"clients_name_{name}.csv")
    _csv(clients.assign(comment_count=[0, 1, 0, 2, 0, 1, 0, 0, 3, 0]),
         folder / "clients_allowed.csv")

    # --- anonymisation: content (innocent column names)
    content_columns = {
        "email": "contact", "phone": "contact", "postcode": "area", "zip": "area",
        "nhs_number": "reference", "ssn": "reference", "date": "intake",
        "titled_name": "gp", "person_name": "referrer", "free_text": "reason",
        "free_text_words": "topic",
    }
    for kind, column in content_columns.items():
        name = f"clients_content_{kind}.csv"
        secrets = SECRETS[name]
        values: list[str | None] = [secrets[i % len(secrets)] for i in range(len(clients))]
        if kind not in ("zip", "person_name", "free_text_words"):
            values[1::3] = [None] * len(values[1::3])  # keep some cells blank
        _csv(clients.assign(**{column: pd.Series(values, dtype=object)}), folder / name)
    ids = dict(zip(["C01", "C02"], SECRETS["alliance_content_person_name_in_id.csv"],
                   strict=True))
    _csv(alliance.assign(client_id=alliance["client_id"].replace(ids)),
         folder / "alliance_content_person_name_in_id.csv")

    dated = clients.assign(intake=[dt.datetime(2023, 1, 1 + i) for i in range(len(clients))])
    _xlsx(dated, folder / "clients_content_date.xlsx")
    dated.to_parquet(folder / "clients_content_date.parquet", index=False)
    coded = clients.assign(gp_code=[1, 2] * 5)
    _sav(coded, folder / "clients_value_labels.sav",
         variable_value_labels={"gp_code": dict(enumerate(SECRETS["clients_value_labels.sav"],
                                                          start=1))})


def main(argv: list[str]) -> None:
    """Write every test file into ``argv[0]`` (default: this folder)."""
    folder = Path(argv[0]) if argv else HERE
    write_good(folder / "good")
    write_bad(folder)


if __name__ == "__main__":
    main(sys.argv[1:])
