//! Google Sheets actions (Sheets API v4, `https://sheets.googleapis.com/v4/spreadsheets/{id}`).
//!
//! Cell values are strings, numbers or booleans; in a row `null` leaves a cell as it is and `""`
//! clears it. Ranges are A1 notation (`Tickets!A2:D2`); a range without a sheet name uses
//! `[config] sheet`.

use super::VALUE_INPUT_OPTIONS;
use crate::platforms::catalog::{field as r, param as p};
use crate::platforms::{ActionSpec, ParamSpec, ParamType};
use crate::rules::ValueType;

const SHEET: ParamSpec = p(
    "sheet",
    ParamType::String,
    false,
    "Sheet (tab) name; defaults to `[config] sheet`.",
);
const VALUES: ParamSpec = p(
    "values",
    ParamType::Any,
    false,
    "The row as a list of cell values, from column A (`[\"{{ ticket.id }}\", \"open\", 3]`).",
);
const FIELDS: ParamSpec = p(
    "fields",
    ParamType::Object,
    false,
    "The row as a table of header → value, placed by the header row (`[config] header_row`); unknown headers are an error.",
);
const VALUE_INPUT: ParamSpec = p(
    "value_input_option",
    ParamType::Enum(VALUE_INPUT_OPTIONS),
    false,
    "`RAW` stores values as given, `USER_ENTERED` parses them like the UI (formulas, dates); defaults to `[config] value_input_option`, else `USER_ENTERED`.",
);
const VALUE_RENDER: &[&str] = &["FORMATTED_VALUE", "UNFORMATTED_VALUE", "FORMULA"];
const DATE_TIME_RENDER: &[&str] = &["SERIAL_NUMBER", "FORMATTED_STRING"];

/// Every Google Sheets action.
pub(crate) static ACTIONS: &[ActionSpec] = &[
    ActionSpec {
        name: "append_row",
        description: "Append a row after the last row of the sheet's table (`values.append`).",
        params: &[
            SHEET,
            p(
                "range",
                ParamType::String,
                false,
                "A1 range in which to look for the table (default: the whole sheet).",
            ),
            VALUES,
            FIELDS,
            VALUE_INPUT,
            p(
                "insert_data_option",
                ParamType::Enum(&["INSERT_ROWS", "OVERWRITE"]),
                false,
                "`INSERT_ROWS` inserts a new row (the default here), `OVERWRITE` writes into the empty cells below the table.",
            ),
        ],
        require_one_of: &[&["values", "fields"]],
        result: &[
            r("spreadsheet_id", ValueType::String),
            r("table_range", ValueType::String),
            r("updated_range", ValueType::String),
            r("updated_rows", ValueType::Integer),
            r("updated_cells", ValueType::Integer),
            r("row_number", ValueType::Integer),
        ],
    },
    ActionSpec {
        name: "update_row",
        description: "Overwrite one row, by number or A1 range (`values.update`).",
        params: &[
            SHEET,
            p(
                "row_number",
                ParamType::Integer,
                false,
                "1-based row number on `sheet` (e.g. `{{ row.row_number }}`).",
            ),
            p(
                "range",
                ParamType::String,
                false,
                "A1 range to write instead of a row number (`Tickets!B7:D7`).",
            ),
            VALUES,
            FIELDS,
            VALUE_INPUT,
        ],
        require_one_of: &[&["row_number", "range"], &["values", "fields"]],
        result: &[
            r("spreadsheet_id", ValueType::String),
            r("updated_range", ValueType::String),
            r("updated_rows", ValueType::Integer),
            r("updated_columns", ValueType::Integer),
            r("updated_cells", ValueType::Integer),
        ],
    },
    ActionSpec {
        name: "read_range",
        description: "Read the values of a range (`values.get`); trailing empty rows and columns are left out.",
        params: &[
            p(
                "range",
                ParamType::String,
                true,
                "A1 range to read (`Tickets!A2:F`).",
            ),
            p(
                "major_dimension",
                ParamType::Enum(&["ROWS", "COLUMNS"]),
                false,
                "Whether `values` is a list of rows (default) or of columns.",
            ),
            p(
                "value_render_option",
                ParamType::Enum(VALUE_RENDER),
                false,
                "How values are rendered: as displayed (default), unformatted, or the formulas.",
            ),
            p(
                "date_time_render_option",
                ParamType::Enum(DATE_TIME_RENDER),
                false,
                "How dates are rendered when values are unformatted (default `SERIAL_NUMBER`).",
            ),
        ],
        require_one_of: &[],
        result: &[
            r("range", ValueType::String),
            r("major_dimension", ValueType::String),
            r("values", ValueType::List),
            r("row_count", ValueType::Integer),
        ],
    },
    ActionSpec {
        name: "create_sheet",
        description: "Add a sheet (tab) to the spreadsheet (`spreadsheets.batchUpdate` with `addSheet`), optionally writing a header row.",
        params: &[
            p(
                "title",
                ParamType::String,
                true,
                "Name of the new sheet; must not exist yet.",
            ),
            p(
                "index",
                ParamType::Integer,
                false,
                "0-based position among the tabs (default: last).",
            ),
            p(
                "row_count",
                ParamType::Integer,
                false,
                "Initial number of rows of the grid.",
            ),
            p(
                "column_count",
                ParamType::Integer,
                false,
                "Initial number of columns of the grid.",
            ),
            p(
                "frozen_row_count",
                ParamType::Integer,
                false,
                "Number of rows frozen at the top (e.g. 1 for a header row).",
            ),
            p(
                "headers",
                ParamType::StringList,
                false,
                "Header cells written to row 1 after the sheet is created.",
            ),
        ],
        require_one_of: &[],
        result: &[
            r("sheet_id", ValueType::Integer),
            r("title", ValueType::String),
            r("index", ValueType::Integer),
        ],
    },
    ActionSpec {
        name: "batch_update",
        description: "Write several ranges at once (`values.batchUpdate`) and/or apply structural and formatting \
                      requests (`spreadsheets.batchUpdate`, all or nothing).",
        params: &[
            VALUE_INPUT,
            p(
                "data",
                ParamType::ObjectList,
                false,
                "Ranges to write: `[{ range = \"Tickets!A2\", values = [[1, \"x\"]] }]`, optionally with `major_dimension`.",
            ),
            p(
                "requests",
                ParamType::ObjectList,
                false,
                "Sheets API Request objects passed through (`repeatCell`, `updateSheetProperties`, `addConditionalFormatRule`…).",
            ),
        ],
        require_one_of: &[&["data", "requests"]],
        result: &[
            r("spreadsheet_id", ValueType::String),
            r("total_updated_rows", ValueType::Integer),
            r("total_updated_columns", ValueType::Integer),
            r("total_updated_cells", ValueType::Integer),
            r("total_updated_sheets", ValueType::Integer),
            r("responses", ValueType::List),
            r("replies", ValueType::List),
        ],
    },
];
