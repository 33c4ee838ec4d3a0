"""Network arithmetic and pictures: summary rows, layer sentences, compare, drawing, table editor."""
