// Bundles the page into the Python package (coop/web/static), so a wheel carries it and
// nothing is fetched from a CDN. Run by `npm run build`.
import { build } from "esbuild";
import { copyFileSync, mkdirSync } from "node:fs";

const out = new URL("../coop/web/static/", import.meta.url).pathname;
mkdirSync(out, { recursive: true });
await build({
  entryPoints: ["src/main.js"], bundle: true, minify: true, format: "iife",
  target: "es2020", outfile: out + "app.js", legalComments: "linked",
});
await build({ entryPoints: ["src/style.css"], bundle: true, minify: true, outfile: out + "app.css" });
for (const name of ["index.html", "manifest.webmanifest", "icon.svg"]) {
  copyFileSync("src/" + name, out + name);
}
console.log("built the page into", out);
