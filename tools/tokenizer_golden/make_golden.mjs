#!/usr/bin/env node
// Writes golden token ids for moerack's tokenizer test (tests/tokenizer/hf_golden_test.cc),
// computed by Hugging Face's own implementations. See README.md.
//
//   node make_golden.mjs TOKENIZER_JSON STRINGS_JSON OUT_JSON [NAME]
//   node make_golden.mjs --manifest MANIFEST_JSON   (every pair it lists; paths in it are
//                                                    relative to the repository root)
//
// Each string is encoded with add_special_tokens = false (no BOS/EOS from the
// post-processor), with added tokens, special ones included, recognised in the text.
// The ids come from `tokenizers` (HF's Rust library through its Node binding: what
// transformers' fast tokenizers run). `@huggingface/tokenizers` (HF's pure-JS port) encodes
// every string too, as a cross-check: the run prints each case where it differs and the
// golden's header counts them, but the Rust ids stay the golden ones (README.md says where
// and why the port differs).
import { readFileSync, writeFileSync } from "node:fs";
import { createRequire } from "node:module";
import path from "node:path";
import { fileURLToPath } from "node:url";

import { Tokenizer as JsTokenizer } from "@huggingface/tokenizers";

const require = createRequire(import.meta.url);
const { Tokenizer: RustTokenizer } = require("tokenizers");

const HERE = path.dirname(fileURLToPath(import.meta.url));
const REPO_ROOT = path.resolve(HERE, "..", "..");

function packageVersion(name) {
  const file = path.join(HERE, "node_modules", ...name.split("/"), "package.json");
  return `${name}@${JSON.parse(readFileSync(file, "utf8")).version}`;
}

// JSON.stringify, but also escaping invisible, format and combining characters
// (categories C, Z except ' ', M) so that the golden files can be read and diffed.
function readableJson(value) {
  return JSON.stringify(value).replace(/[\p{C}\p{Z}\p{M}]/gu, (c) => {
    if (c === " ") return c;
    let out = "";
    for (let i = 0; i < c.length; ++i) out += `\\u${c.charCodeAt(i).toString(16).padStart(4, "0")}`;
    return out;
  });
}

function defaultName(tokenizerPath) {
  const base = path.basename(tokenizerPath, ".json");
  return base === "tokenizer" ? path.basename(path.dirname(path.resolve(tokenizerPath))) : base;
}

async function makeGolden(tokenizerPath, stringsPath, outPath, name) {
  const tokenizerText = readFileSync(tokenizerPath, "utf8");
  const stringsJson = JSON.parse(readFileSync(stringsPath, "utf8"));
  const strings = Array.isArray(stringsJson) ? stringsJson : stringsJson.strings;
  const rust = RustTokenizer.fromString(tokenizerText);
  const js = new JsTokenizer(JSON.parse(tokenizerText), {});

  const cases = [];
  let numJsDisagreements = 0;
  for (const text of strings) {
    const encoding = await rust.encode(text, null, { addSpecialTokens: false });
    const ids = Array.from(encoding.getIds());
    const entry = { text, ids };
    // Where HF's decode does not give back the text (a normalizer changed it, or an
    // lstrip/rstrip token swallowed whitespace), record what it gives.
    const decoded = ids.length === 0 ? "" : await rust.decode(ids, false);
    if (decoded !== text) entry.decoded = decoded;
    const jsIds = js.encode(text, { add_special_tokens: false }).ids;
    if (JSON.stringify(jsIds) !== JSON.stringify(ids)) {
      ++numJsDisagreements;
      console.error(`${name}: JS port disagrees on ${readableJson(text)}\n  rust ${JSON.stringify(ids)}\n  js   ${JSON.stringify(jsIds)}`);
    }
    cases.push(entry);
  }

  const header = {
    tokenizer: name,
    reference: `${packageVersion("tokenizers")} (Hugging Face tokenizers, Rust, Node binding)`,
    cross_check: `${packageVersion("@huggingface/tokenizers")} differs on ${numJsDisagreements} of ${cases.length} cases`,
  };
  const lines = Object.entries(header).map(([k, v]) => ` ${JSON.stringify(k)}: ${JSON.stringify(v)},`);
  const body = cases.map((c) => "  {" + Object.entries(c).map(([k, v]) => `${JSON.stringify(k)}: ${readableJson(v)}`).join(", ") + "}");
  writeFileSync(outPath, `{\n${lines.join("\n")}\n "cases": [\n${body.join(",\n")}\n ]\n}\n`);
  console.log(`${outPath}: ${cases.length} cases, ${numJsDisagreements} JS-port disagreement(s)`);
}

async function main(argv) {
  if (argv[0] === "--manifest" && argv.length === 2) {
    const manifest = JSON.parse(readFileSync(argv[1], "utf8"));
    const fromRoot = (p) => path.join(REPO_ROOT, p);
    for (const pair of manifest.pairs) {
      const golden = fromRoot(pair.golden);
      await makeGolden(fromRoot(pair.tokenizer), fromRoot(manifest.strings), golden, path.basename(golden, ".json"));
    }
    return;
  }
  if (argv.length < 3 || argv.length > 4) {
    console.error("usage: node make_golden.mjs TOKENIZER_JSON STRINGS_JSON OUT_JSON [NAME]\n" +
                  "       node make_golden.mjs --manifest MANIFEST_JSON");
    process.exit(2);
  }
  await makeGolden(argv[0], argv[1], argv[2], argv[3] ?? defaultName(argv[0]));
}

await main(process.argv.slice(2));
