// Answers codec calls for the Python tests: one JSON request per line on stdin ({fn, input}), one JSON
// result per line on stdout. A thrown exception is reported as {crash} so the test can fail on it.
'use strict';
const path = require('path');
const readline = require('readline');
const codec = require(path.resolve(__dirname, '../../codecs/js/citynode.js'));

const rl = readline.createInterface({input: process.stdin, terminal: false});
rl.on('line', (line) => {
  let result;
  try {
    const req = JSON.parse(line);
    result = codec[req.fn](req.input);
  } catch (e) {
    result = {crash: String(e && e.stack || e)};
  }
  process.stdout.write(JSON.stringify(result) + '\n');
});
