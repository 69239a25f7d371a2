// @tus/server with @tus/file-store on loopback: node server.js PORT DIRECTORY
const http = require("node:http");
const { Server } = require("@tus/server");
const { FileStore } = require("@tus/file-store");

const [port, directory] = process.argv.slice(2);
const tus = new Server({ path: "/files", datastore: new FileStore({ directory }) });
http
  .createServer((req, res) => {
    if (req.url === "/healthz") {
      res.end("ok");
      return;
    }
    tus.handle(req, res);
  })
  .listen(Number(port), "127.0.0.1");
