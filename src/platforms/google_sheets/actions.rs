//! Google Sheets actions (Sheets API v4, `https://sheets.googleapis.com/v4/spreadsheets/{id}`).
//!
//! Cell values are strings, numbers or booleans; in a row `null` leaves a cell as it is and `""`
//! clears it. Ranges are A1 notation (`Tickets!A2:D2`); a range without a sheet name uses
//! `[config] sheet`.
//!
//! One row per parameter and result field (the row syntax is in [`crate::platforms::catalog`]);
//! each action's request code is in [`super::connector`].

use super::VALUE_INPUT_OPTIONS;
use crate::platforms::catalog::{fields, param, params};
use crate::platforms::{ActionSpec, ParamSpec, Resend};

const SHEET: ParamSpec =
    param!("sheet": String, optional, "Sheet (tab) name; defaults to `[config] sheet`.");
const VALUES: ParamSpec = param!("values": Any, optional, "The row as a list of cell values, from column A (`[\"{{ ticket.id }}\", \"open\", 3]`).");
const FIELDS: ParamSpec = param!("fields": Object, optional, "The row as a table of header → value, placed by the header row (`[config] header_row`); unknown headers are an error.");
const VALUE_INPUT: ParamSpec = param!("value_input_option": Enum(VALUE_INPUT_OPTIONS), optional, "`RAW` stores values as given, `USER_ENTERED` parses them like the UI (formulas, dates); defaults to `[config] value_input_option`, else `USER_ENTERED`.");
const VALUE_RENDER: &[&str] = &["FORMATTED_VALUE", "UNFORMATTED_VALUE", "FORMULA"];
const DATE_TIME_RENDER: &[&str] = &["SERIAL_NUMBER", "FORMATTED_STRING"];

/// Every Google Sheets action.
pub(crate) static ACTIONS: &[ActionSpec] = &[
    ActionSpec {
        name: "append_row",
        description: "Append a row after the last row of the sheet's table (`values.append`).",
        params: params![
            SHEET;
            "range": String, optional, "A1 range in which to look for the table (default: the whole sheet).";
            VALUES;
            FIELDS;
            VALUE_INPUT;
            "insert_data_option": Enum(&["INSERT_ROWS", "OVERWRITE"]), optional, "`INSERT_ROWS` inserts a new row (the default here), `OVERWRITE` writes into the empty cells below the table.";
        ],
        require_one_of: &[&["values", "fields"]],
        result: fields![
            "spreadsheet_id": String,
            "table_range": String,
            "updated_range": String,
            "updated_rows": Integer,
            "updated_cells": Integer,
            "row_number": Integer,
        ],
    },
    ActionSpec {
        name: "update_row",
        description: "Overwrite one row, by number or A1 range (`values.update`).",
        params: params![
            SHEET;
            "row_number": Integer, optional, "1-based row number on `sheet` (e.g. `{{ row.row_number }}`).";
            "range": String, optional, "A1 range to write instead of a row number (`Tickets!B7:D7`).";
            VALUES;
            FIELDS;
            VALUE_INPUT;
        ],
        require_one_of: &[&["row_number", "range"], &["values", "fields"]],
        result: fields![
            "spreadsheet_id": String,
            "updated_range": String,
            "updated_rows": Integer,
            "updated_columns": Integer,
            "updated_cells": Integer,
        ],
    },
    ActionSpec {
        name: "read_range",
        description: "Read the values of a range (`values.get`); trailing empty rows and columns are left out.",
        params: params![
            "range": String, required, "A1 range to read (`Tickets!A2:F`).";
            "major_dimension": Enum(&["ROWS", "COLUMNS"]), optional, "Whether `values` is a list of rows (default) or of columns.";
            "value_render_option": Enum(VALUE_RENDER), optional, "How values are rendered: as displayed (default), unformatted, or the formulas.";
            "date_time_render_option": Enum(DATE_TIME_RENDER), optional, "How dates are rendered when values are unformatted (default `SERIAL_NUMBER`).";
        ],
        require_one_of: &[],
        result: fields![
            "range": String,
            "major_dimension": String,
            "values": List,
            "row_count": Integer,
        ],
    },
    ActionSpec {
        name: "create_sheet",
        description: "Add a sheet (tab) to the spreadsheet (`spreadsheets.batchUpdate` with `addSheet`), optionally writing a header row.",
        params: params![
            "title": String, required, "Name of the new sheet; must not exist yet.";
            "index": Integer, optional, "0-based position among the tabs (default: last).";
            "row_count": Integer, optional, "Initial number of rows of the grid.";
            "column_count": Integer, optional, "Initial number of columns of the grid.";
            "frozen_row_count": Integer, optional, "Number of rows frozen at the top (e.g. 1 for a header row).";
            "headers": StringList, optional, "Header cells written to row 1 after the sheet is created.";
        ],
        require_one_of: &[],
        result: fields!["sheet_id": Integer, "title": String, "index": Integer],
    },
    ActionSpec {
        name: "batch_update",
        description: "Write several ranges at once (`values.batchUpdate`) and/or apply structural and formatting \
                      requests (`spreadsheets.batchUpdate`, all or nothing).",
        params: params![
            VALUE_INPUT;
            "data": ObjectList, optional, "Ranges to write: `[{ range = \"Tickets!A2\", values = [[1, \"x\"]] }]`, optionally with `major_dimension`.";
            "requests": ObjectList, optional, "Sheets API Request objects passed through (`repeatCell`, `updateSheetProperties`, `addConditionalFormatRule`…).";
        ],
        require_one_of: &[&["data", "requests"]],
        result: fields![
            "spreadsheet_id": String,
            "total_updated_rows": Integer,
            "total_updated_columns": Integer,
            "total_updated_cells": Integer,
            "total_updated_sheets": Integer,
            "responses": List,
            "replies": List,
        ],
    },
];

/// How each creating action may be sent again (see [`Resend`]). Sheet titles are unique in a
/// spreadsheet (`addSheet` of an existing title is refused); an appended row, or a batch
/// (whose requests may insert), applied twice is applied twice.
pub(crate) static RESEND: &[(&str, Resend)] = &[
    (
        "append_row",
        Resend::Duplicates {
            check: "the sheet's last rows for this row",
        },
    ),
    (
        "batch_update",
        Resend::Duplicates {
            check: "the spreadsheet for the batch's changes",
        },
    ),
    ("create_sheet", Resend::UniqueName),
];
