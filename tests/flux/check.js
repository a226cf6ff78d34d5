// Reads a JSON list of Flux scripts on stdin; prints a JSON list of booleans: is each one valid Flux?
const { Flux } = require('@influxdata/flux-lsp-node');
let input = '';
process.stdin.on('data', (chunk) => { input += chunk; });
process.stdin.on('end', () => {
  const scripts = JSON.parse(input);
  process.stdout.write(JSON.stringify(scripts.map((script) => new Flux(script).is_valid())));
});
