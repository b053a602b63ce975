// Parse an AsyncAPI document with the real @asyncapi/parser and print its diagnostics.
//
//   node validate.mjs FILE
//
// Prints one JSON object on stdout: {"parsed": bool, "diagnostics": [{severity, code,
// message, path, line}]}, severity one of error | warning | information | hint.
// Exit status: 0 when there is no error diagnostic, 1 when there is, 2 on bad usage.
// Only FILE is read: no network access (the document has no external $ref).
import { resolve } from "node:path";

import { Parser, fromFile } from "@asyncapi/parser";

const SEVERITY = ["error", "warning", "information", "hint"];

const [file] = process.argv.slice(2);
if (!file) {
  console.error("usage: node validate.mjs FILE");
  process.exit(2);
}

const parser = new Parser();
const { document, diagnostics } = await fromFile(parser, resolve(file)).parse();
const out = diagnostics.map((d) => ({
  severity: SEVERITY[d.severity] ?? String(d.severity),
  code: String(d.code),
  message: d.message,
  path: d.path.join("."),
  line: d.range ? d.range.start.line + 1 : null,
}));
console.log(JSON.stringify({ parsed: document !== undefined, diagnostics: out }, null, 2));
process.exit(out.some((d) => d.severity === "error") ? 1 : 0);
