package main

import (
	"fmt"
	"strings"
)

// table is a markdown table. Columns named in right are right-aligned
// (figures); the others are left-aligned (names).
type table struct {
	header []string
	right  []bool
	rows   [][]string
}

func newTable(cols ...string) *table {
	t := &table{}
	for _, c := range cols {
		// A leading '>' marks a figure column; it is not part of the name.
		name, r := strings.CutPrefix(c, ">")
		t.header = append(t.header, name)
		t.right = append(t.right, r)
	}
	return t
}

func (t *table) add(cells ...any) {
	row := make([]string, len(cells))
	for i, c := range cells {
		// A cell is a table's only delimiter, so a '|' inside one is escaped.
		row[i] = strings.ReplaceAll(fmt.Sprint(c), "|", `\|`)
	}
	t.rows = append(t.rows, row)
}

func (t *table) String() string {
	var b strings.Builder
	b.WriteString("| " + strings.Join(t.header, " | ") + " |\n|")
	for _, r := range t.right {
		if r {
			b.WriteString("---:|")
		} else {
			b.WriteString("---|")
		}
	}
	b.WriteString("\n")
	for _, row := range t.rows {
		b.WriteString("| " + strings.Join(row, " | ") + " |\n")
	}
	return b.String()
}
