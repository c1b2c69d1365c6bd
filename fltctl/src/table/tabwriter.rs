//! A port of Go's `text/tabwriter` with the settings fleetctl used: minwidth 0, tabwidth 8,
//! padding 1, padchar `'\t'`, no flags. Output therefore contains literal TABs.
//!
//! Text is split into lines at `'\n'` and into cells at `'\t'` (or `'\v'`). The last cell of a
//! line is not part of any column and is written unpadded. A column is aligned over each run of
//! consecutive lines that have a cell in it: its width is the widest cell (in characters) plus
//! one, rounded up to a multiple of 8, and each cell in it is followed by
//! `ceil((width − len) / 8)` tabs.

const TAB_WIDTH: usize = 8;
const PADDING: usize = 1;

struct Cell<'a> {
    text: &'a str,
    width: usize,
}

/// Aligns `text` exactly as fleetctl's tabwriter did after a final `Flush`.
pub fn tabwrite(text: &str) -> String {
    let mut lines: Vec<Vec<Cell<'_>>> = Vec::new();
    let mut rest = text;
    loop {
        match rest.find('\n') {
            Some(end) => {
                lines.push(cells(&rest[..end], true));
                rest = &rest[end + 1..];
            }
            None => {
                lines.push(cells(rest, false));
                break;
            }
        }
    }
    let mut writer = Writer {
        lines,
        out: String::with_capacity(text.len() * 2),
        widths: Vec::new(),
    };
    writer.format(0, writer.lines.len());
    writer.out
}

/// The cells of one line. On the unterminated last line Go only keeps a trailing cell that has
/// text, so there `"a\t"` is the single cell `a`.
fn cells(line: &str, terminated: bool) -> Vec<Cell<'_>> {
    let mut cells: Vec<Cell<'_>> = line
        .split(['\t', '\u{b}'])
        .map(|text| Cell {
            text,
            width: text.chars().count(),
        })
        .collect();
    if !terminated && cells.last().is_some_and(|c| c.text.is_empty()) {
        cells.pop();
    }
    cells
}

struct Writer<'a> {
    lines: Vec<Vec<Cell<'a>>>,
    out: String,
    /// Widths of the columns to the left of the one being formatted.
    widths: Vec<usize>,
}

impl Writer<'_> {
    /// Whether line `i` has a (tab-terminated) cell in `column`.
    fn has_column(&self, i: usize, column: usize) -> bool {
        column + 1 < self.lines[i].len()
    }

    fn format(&mut self, mut line0: usize, line1: usize) {
        let column = self.widths.len();
        let mut this = line0;
        while this < line1 {
            if !self.has_column(this, column) {
                this += 1;
                continue;
            }
            // A column block starts here: print what came before, then size the block.
            self.write_lines(line0, this);
            line0 = this;
            let mut width = 0;
            while this < line1 && self.has_column(this, column) {
                width = width.max(self.lines[this][column].width + PADDING);
                this += 1;
            }
            self.widths.push(width);
            self.format(line0, this);
            self.widths.pop();
            line0 = this;
        }
        self.write_lines(line0, line1);
    }

    fn write_lines(&mut self, line0: usize, line1: usize) {
        for i in line0..line1 {
            for (j, cell) in self.lines[i].iter().enumerate() {
                self.out.push_str(cell.text);
                if let Some(&column_width) = self.widths.get(j) {
                    let cell_width = column_width.div_ceil(TAB_WIDTH) * TAB_WIDTH;
                    let tabs = (cell_width - cell.width).div_ceil(TAB_WIDTH);
                    self.out.extend(std::iter::repeat_n('\t', tabs));
                }
            }
            if i + 1 < self.lines.len() {
                self.out.push('\n');
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spec_example() {
        let text = "UNIT\tHASH\tDSTATE\tSTATE\tTARGET\n\
                    bar.service\t40ea664\tlaunched\tlaunched\ta84622dd.../172.17.8.101\n";
        assert_eq!(
            tabwrite(text),
            "UNIT\t\tHASH\tDSTATE\t\tSTATE\t\tTARGET\n\
             bar.service\t40ea664\tlaunched\tlaunched\ta84622dd.../172.17.8.101\n"
        );
    }

    #[test]
    fn widths_round_up_to_tab_stops() {
        // Widest cell 7 → width 8 → one tab each; widest 8 → width 9 → 16.
        assert_eq!(tabwrite("a\tx\n1234567\ty\n"), "a\tx\n1234567\ty\n");
        assert_eq!(tabwrite("a\tx\n12345678\ty\n"), "a\t\tx\n12345678\ty\n");
        // Empty cells are padded like any other.
        assert_eq!(tabwrite("\tx\nabc\ty\n"), "\tx\nabc\ty\n");
        assert_eq!(tabwrite("\tx\n123456789\ty\n"), "\t\tx\n123456789\ty\n");
    }

    #[test]
    fn last_cell_is_unpadded_and_trailing_tab_makes_an_empty_last_cell() {
        assert_eq!(tabwrite("abc\n"), "abc\n");
        assert_eq!(tabwrite("a\tb\t\n"), "a\tb\t\n");
        assert_eq!(
            tabwrite("a\tb\nlonger-than-eight\tc\n"),
            "a\t\t\tb\nlonger-than-eight\tc\n"
        );
    }

    #[test]
    fn width_counts_characters_not_bytes() {
        // "héllo wörld" is 11 characters (13 bytes): width 12 → 16.
        assert_eq!(
            tabwrite("héllo wörld\tx\nab\ty\n"),
            "héllo wörld\tx\nab\t\ty\n"
        );
    }

    #[test]
    fn column_blocks_are_runs_of_lines_having_the_column() {
        // The middle line has no tab, so it splits column 0 into two blocks.
        let out = tabwrite("a\tb\nno-tabs-here\nvery-long-cell\tc\n");
        assert_eq!(out, "a\tb\nno-tabs-here\nvery-long-cell\tc\n");
        // A line with fewer cells ends the block of the deeper column only.
        let out = tabwrite("a\tb\tc\naa\tbbbbbbbbbbb\tc\nx\ty\n");
        assert_eq!(out, "a\tb\t\tc\naa\tbbbbbbbbbbb\tc\nx\ty\n");
    }

    #[test]
    fn vertical_tab_also_ends_a_cell() {
        assert_eq!(
            tabwrite("a\u{b}b\n123456789\u{b}c\n"),
            "a\t\tb\n123456789\tc\n"
        );
    }

    #[test]
    fn matches_go_on_recorded_cases() {
        // Inputs from a random generator; outputs recorded from Go 1.19's text/tabwriter with
        // fleetctl's settings (0, 8, 1, '\t', 0). A 4000-case run of the same comparison matched.
        let cases = [
            (
                "\t\t\t xx\u{b}1\t.\n\t\n\t\nb1é\n1b\t",
                "\t\t\t xx\t1\t.\n\t\n\t\nb1é\n1b",
            ),
            (
                "\n\né\tx\t1\u{b} \n.\t\u{b}\t\tx\t.a \n\t\n\t\ta\u{b}é",
                "\n\né\tx\t1\t \n.\t\t\t\tx\t.a \n\t\n\t\ta\té",
            ),
            (
                "a\u{b}ab\n\t\t.\taba \t.éx\t1\n\t\tba\n\t\t",
                "a\tab\n\t\t.\taba \t.éx\t1\n\t\tba\n\t",
            ),
            (
                "\u{b}é\u{b}.\t\u{b}x\u{b}1b\t\n\t\t\n\n\n",
                "\té\t.\t\tx\t1b\t\n\t\t\n\n\n",
            ),
            (
                "x\t\nb .b\na\nx\t\t  a\nxé\nxbé\n1\n \t\n\t",
                "x\t\nb .b\na\nx\t\t  a\nxé\nxbé\n1\n \t\n",
            ),
            (
                "\t\u{b}b\téa\t\n.x\t.1.\t\nx.x\u{b}..xx\t\na\u{b}.x \n a",
                "\t\tb\téa\t\n.x\t.1.\t\nx.x\t..xx\t\na\t.x \n a",
            ),
            (
                "\u{b}\t\taéé\n\t\n\tb \u{b} \té1a.a\t\naaéab1 ",
                "\t\t\taéé\n\t\n\tb \t \té1a.a\t\naaéab1 ",
            ),
            (
                "\t1\n \na\t1\né.b\t\u{b}\té\t.a1\n\t\t\t\u{b}é\naxa\na",
                "\t1\n \na\t1\né.b\t\t\té\t.a1\n\t\t\t\té\naxa\na",
            ),
            (
                "é\t.xx1a\t\n \n1.éé\té\n \t\n\t\tb\t\u{b}1a\t\txx\tb",
                "é\t.xx1a\t\n \n1.éé\té\n \t\n\t\tb\t\t1a\t\txx\tb",
            ),
            (
                "\t\u{b}1a \u{b}.b \u{b}\n\ta1 1\té\n.abxxa\n\u{b}éé1xxa.1b",
                "\t\t1a \t.b \t\n\ta1 1\té\n.abxxa\n\téé1xxa.1b",
            ),
            (
                "\tbx\t\u{b}\t\té.\t\u{b} \u{b}\t\n.\t bax.\t1é\t\nabx\t\tb\t\n1\n\t ",
                "\tbx\t\t\t\té.\t\t \t\t\n.\t bax.\t1é\t\nabx\t\tb\t\n1\n\t ",
            ),
            (
                "x1éa\t a\t\n.b\n\t\né\n\u{b}x\t.\tx\té\txa.\té. béx\nxa\t\u{b}\na\n",
                "x1éa\t a\t\n.b\n\t\né\n\tx\t.\tx\té\txa.\té. béx\nxa\t\t\na\n",
            ),
        ];
        for (input, go_output) in cases {
            assert_eq!(tabwrite(input), go_output, "{input:?}");
        }
    }

    #[test]
    fn unterminated_last_line() {
        assert_eq!(tabwrite("a\tb\nccccccccc\td"), "a\t\tb\nccccccccc\td");
        // Go drops an empty trailing cell on the unflushed last line, tab included.
        assert_eq!(tabwrite("a\t"), "a");
        assert_eq!(tabwrite(""), "");
    }
}

#[cfg(test)]
mod props {
    use super::*;
    use proptest::prelude::*;

    /// The display column where each tab-separated cell of `line` starts, with tab stops every 8.
    fn cell_starts(line: &str) -> Vec<(usize, String)> {
        let mut cells = Vec::new();
        let mut col = 0;
        let mut current = String::new();
        let mut start = 0;
        for c in line.chars() {
            if c == '\t' {
                if !current.is_empty() {
                    cells.push((start, std::mem::take(&mut current)));
                }
                col = (col / 8 + 1) * 8;
            } else {
                if current.is_empty() {
                    start = col;
                }
                current.push(c);
                col += 1;
            }
        }
        if !current.is_empty() {
            cells.push((start, current));
        }
        cells
    }

    fn table() -> impl Strategy<Value = Vec<Vec<String>>> {
        (1usize..6).prop_flat_map(|columns| {
            proptest::collection::vec(
                proptest::collection::vec("[a-zé./@ -]{1,20}", columns),
                1..8,
            )
        })
    }

    proptest! {
        #[test]
        fn columns_line_up_at_the_spec_widths(rows in table()) {
            let text: String = rows.iter().map(|r| r.join("\t") + "\n").collect();
            let out = tabwrite(&text);
            // Only tabs are added.
            prop_assert_eq!(out.replace('\t', ""), text.replace('\t', ""));
            let columns = rows[0].len();
            let mut expected_start = 0;
            for k in 0..columns {
                for (row, line) in rows.iter().zip(out.lines()) {
                    let cells = cell_starts(line);
                    prop_assert_eq!(cells.len(), columns);
                    prop_assert_eq!(&cells[k].1, &row[k]);
                    prop_assert_eq!(cells[k].0, expected_start, "column {} of {:?}", k, line);
                }
                let widest = rows.iter().map(|r| r[k].chars().count()).max().unwrap_or(0);
                expected_start += (widest + 1).div_ceil(8) * 8;
            }
        }
    }
}
