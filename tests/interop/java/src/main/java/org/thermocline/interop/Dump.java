/*
 * Dump -- prints every row of Parquet files as JSON lines, read with parquet-java's example Group API.
 *
 * Usage: java -cp ... org.thermocline.interop.Dump FILE...
 * For each file it prints a line {"file": PATH, "rows": N, "created_by": ...} and then one JSON array per
 * row, values in schema order: null for a missing optional value, numbers for numeric columns
 * (floats widened to double so that the decimal text is the exact value; NaN/Infinity as the bare
 * tokens Python's json module accepts), strings for UTF8 columns, lowercase hex for other binaries,
 * true/false for booleans. Errors go to stderr with exit status 1: the caller treats any as failure.
 */
package org.thermocline.interop;

import java.io.BufferedWriter;
import java.io.OutputStreamWriter;
import java.nio.charset.StandardCharsets;
import java.nio.file.Paths;
import org.apache.parquet.example.data.Group;
import org.apache.parquet.hadoop.ParquetFileReader;
import org.apache.parquet.column.page.PageReadStore;
import org.apache.parquet.example.data.simple.convert.GroupRecordConverter;
import org.apache.parquet.hadoop.metadata.ParquetMetadata;
import org.apache.parquet.io.InputFile;
import org.apache.parquet.io.ColumnIOFactory;
import org.apache.parquet.io.LocalInputFile;
import org.apache.parquet.io.MessageColumnIO;
import org.apache.parquet.io.RecordReader;
import org.apache.parquet.schema.LogicalTypeAnnotation;
import org.apache.parquet.schema.MessageType;
import org.apache.parquet.schema.PrimitiveType;
import org.apache.parquet.schema.Type;

public final class Dump {
    private Dump() {}

    private static final char[] HEX = "0123456789abcdef".toCharArray();

    private static void jsonString(StringBuilder sb, String s) {
        sb.append('"');
        for (int i = 0; i < s.length(); i++) {
            char c = s.charAt(i);
            switch (c) {
                case '"': sb.append("\\\""); break;
                case '\\': sb.append("\\\\"); break;
                case '\n': sb.append("\\n"); break;
                case '\r': sb.append("\\r"); break;
                case '\t': sb.append("\\t"); break;
                default:
                    if (c < 0x20) {
                        sb.append(String.format("\\u%04x", (int) c));
                    } else {
                        sb.append(c); // surrogate pairs pass through and stay valid UTF-16
                    }
            }
        }
        sb.append('"');
    }

    private static void number(StringBuilder sb, double d) {
        if (Double.isNaN(d)) {
            sb.append("NaN");
        } else if (Double.isInfinite(d)) {
            sb.append(d > 0 ? "Infinity" : "-Infinity");
        } else {
            sb.append(Double.toString(d)); // shortest text that parses back to the same double
        }
    }

    private static void value(StringBuilder sb, Group g, int field, Type t) {
        PrimitiveType p = t.asPrimitiveType();
        switch (p.getPrimitiveTypeName()) {
            case BOOLEAN: sb.append(g.getBoolean(field, 0)); break;
            case INT32: sb.append(g.getInteger(field, 0)); break;
            case INT64: sb.append(g.getLong(field, 0)); break;
            case FLOAT: number(sb, (double) g.getFloat(field, 0)); break;
            case DOUBLE: number(sb, g.getDouble(field, 0)); break;
            case BINARY: {
                LogicalTypeAnnotation la = p.getLogicalTypeAnnotation();
                if (la instanceof LogicalTypeAnnotation.StringLogicalTypeAnnotation) {
                    jsonString(sb, g.getBinary(field, 0).toStringUsingUTF8());
                } else {
                    byte[] b = g.getBinary(field, 0).getBytes();
                    sb.append('"');
                    for (byte x : b) {
                        sb.append(HEX[(x >> 4) & 15]).append(HEX[x & 15]);
                    }
                    sb.append('"');
                }
                break;
            }
            default:
                throw new IllegalStateException("unexpected type " + p);
        }
    }

    public static void main(String[] args) throws Exception {
        BufferedWriter out = new BufferedWriter(new OutputStreamWriter(System.out, StandardCharsets.UTF_8), 1 << 16);
        for (String path : args) {
            InputFile in = new LocalInputFile(Paths.get(path));
            try (ParquetFileReader fr = ParquetFileReader.open(in)) {
                ParquetMetadata md = fr.getFooter();
                long rows = fr.getRecordCount();
                String createdBy = md.getFileMetaData().getCreatedBy();
                MessageType schema = md.getFileMetaData().getSchema();
                StringBuilder head = new StringBuilder("{\"file\": ");
                jsonString(head, path);
                head.append(", \"rows\": ").append(rows).append(", \"created_by\": ");
                jsonString(head, createdBy == null ? "" : createdBy);
                head.append("}\n");
                out.write(head.toString());
                // The record-assembly path of the example API: row group by row group, column
                // readers assembled into Groups by GroupRecordConverter.
                MessageColumnIO io = new ColumnIOFactory().getColumnIO(schema);
                long seen = 0;
                PageReadStore pages;
                while ((pages = fr.readNextRowGroup()) != null) {
                    RecordReader<Group> rr = io.getRecordReader(pages, new GroupRecordConverter(schema));
                    for (long i = 0; i < pages.getRowCount(); i++) {
                        Group g = rr.read();
                        StringBuilder sb = new StringBuilder("[");
                        for (int f = 0; f < schema.getFieldCount(); f++) {
                            if (f > 0) sb.append(", ");
                            if (g.getFieldRepetitionCount(f) == 0) {
                                sb.append("null");
                            } else {
                                value(sb, g, f, schema.getType(f));
                            }
                        }
                        sb.append("]\n");
                        out.write(sb.toString());
                        seen++;
                    }
                }
                if (seen != rows) {
                    throw new IllegalStateException(path + ": read " + seen + " rows, footer says " + rows);
                }
            }
        }
        out.flush();
    }
}
