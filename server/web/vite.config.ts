// Builds the console (index.html → /) and the staff web app (app/index.html → /app/) into
// VIGIL_WEB_OUT_DIR (set by server/build.rs) or dist/. Everything under assets/ is named by
// content hash; the service worker keeps a fixed name (app/sw.js) and gets the app's file list.
import { readdirSync, readFileSync, statSync, writeFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { brotliCompressSync, constants, gzipSync } from 'node:zlib';
import { defineConfig, type Plugin } from 'vite';

const root = import.meta.dirname;
const outDir = process.env.VIGIL_WEB_OUT_DIR ?? resolve(root, 'dist');

/** Writes the app's files into the service worker, so it can cache them at install. */
function serviceWorkerPrecache(): Plugin {
  return {
    name: 'vigil-sw-precache',
    generateBundle(_options, bundle) {
      const files = new Set<string>(['/app/', '/app/manifest.webmanifest', '/app/icon.svg', '/app/icon-maskable.svg']);
      const visit = (name: string) => {
        const chunk = bundle[name];
        if (!chunk || files.has('/' + name)) return;
        files.add('/' + name);
        if (chunk.type === 'chunk') {
          chunk.imports.forEach(visit);
          chunk.viteMetadata?.importedCss.forEach((css) => files.add('/' + css));
          chunk.viteMetadata?.importedAssets.forEach((asset) => files.add('/' + asset));
        }
      };
      for (const [name, chunk] of Object.entries(bundle)) {
        if (chunk.type === 'chunk' && chunk.isEntry && chunk.name === 'app') visit(name);
      }
      const sw = bundle['app/sw.js'];
      if (!sw || sw.type !== 'chunk') throw new Error('app/sw.js missing from the bundle');
      const version = [...files].sort().join(',');
      const list = /(["'`])__VIGIL_PRECACHE__\1/;
      if (!list.test(sw.code) || !sw.code.includes('__VIGIL_VERSION__')) throw new Error('app/sw.js lost its placeholders');
      sw.code = sw.code.replace(list, JSON.stringify([...files].sort())).replaceAll('__VIGIL_VERSION__', hash(version));
    },
  };
}

function hash(text: string): string {
  let h = 2166136261;
  for (let i = 0; i < text.length; i++) h = Math.imul(h ^ text.charCodeAt(i), 16777619);
  return (h >>> 0).toString(36);
}

/**
 * licenses.txt: the licence of every package that ships in the bundle (MapLibre's BSD licence
 * and world-atlas's ISC licence ask for their notices to travel with copies).
 */
function licenses(): Plugin {
  return {
    name: 'vigil-licenses',
    apply: 'build',
    generateBundle() {
      const pkg = JSON.parse(readFileSync(join(root, 'package.json'), 'utf8')) as { dependencies: Record<string, string> };
      const parts = Object.keys(pkg.dependencies).sort().map((name) => {
        const dir = join(root, 'node_modules', name);
        const meta = JSON.parse(readFileSync(join(dir, 'package.json'), 'utf8')) as { version: string; license?: string; author?: string | { name?: string } };
        const file = readdirSync(dir).find((f) => /^licen[cs]e/i.test(f));
        const author = typeof meta.author === 'string' ? meta.author : meta.author?.name ?? `the ${name} authors`;
        const text = file ? readFileSync(join(dir, file), 'utf8') : meta.license === 'MIT' ? mit(author) : `Licence: ${meta.license ?? 'unknown'}`;
        return `== ${name} ${meta.version}\n\n${text.trim()}\n`;
      });
      const header = 'Vigil (AGPL-3.0-or-later) ships these packages in its web bundle.\nCountry outlines: Natural Earth (public domain), packaged by world-atlas.\n\n';
      this.emitFile({ type: 'asset', fileName: 'licenses.txt', source: header + parts.join('\n') });
    },
  };
}

function mit(holder: string): string {
  return `MIT License\n\nCopyright (c) ${holder}\n\nPermission is hereby granted, free of charge, to any person obtaining a copy of this software and associated documentation files (the "Software"), to deal in the Software without restriction, including without limitation the rights to use, copy, modify, merge, publish, distribute, sublicense, and/or sell copies of the Software, and to permit persons to whom the Software is furnished to do so, subject to the following conditions:\n\nThe above copyright notice and this permission notice shall be included in all copies or substantial portions of the Software.\n\nTHE SOFTWARE IS PROVIDED "AS IS", WITHOUT WARRANTY OF ANY KIND, EXPRESS OR IMPLIED, INCLUDING BUT NOT LIMITED TO THE WARRANTIES OF MERCHANTABILITY, FITNESS FOR A PARTICULAR PURPOSE AND NONINFRINGEMENT. IN NO EVENT SHALL THE AUTHORS OR COPYRIGHT HOLDERS BE LIABLE FOR ANY CLAIM, DAMAGES OR OTHER LIABILITY, WHETHER IN AN ACTION OF CONTRACT, TORT OR OTHERWISE, ARISING FROM, OUT OF OR IN CONNECTION WITH THE SOFTWARE OR THE USE OR OTHER DEALINGS IN THE SOFTWARE.`;
}

/** Brotli and gzip copies of every compressible file, served when the browser takes them. */
function precompress(): Plugin {
  return {
    name: 'vigil-precompress',
    apply: 'build',
    closeBundle() {
      const walk = (dir: string): string[] =>
        readdirSync(dir).flatMap((entry) => {
          const path = join(dir, entry);
          return statSync(path).isDirectory() ? walk(path) : [path];
        });
      for (const file of walk(outDir)) {
        if (!/\.(html|js|css|json|svg|webmanifest|txt)$/.test(file)) continue;
        const data = readFileSync(file);
        if (data.length < 1024) continue;
        writeFileSync(`${file}.br`, brotliCompressSync(data, { params: { [constants.BROTLI_PARAM_QUALITY]: 10 } }));
        writeFileSync(`${file}.gz`, gzipSync(data, { level: 9 }));
      }
    },
  };
}

export default defineConfig({
  // One copy of MapLibre: the CSP build, whose worker is a file of this origin rather than a
  // blob: URL, so the Content-Security-Policy needs no exception.
  resolve: { alias: [{ find: /^maplibre-gl$/, replacement: 'maplibre-gl/dist/maplibre-gl-csp.js' }] },
  build: {
    outDir,
    emptyOutDir: true,
    target: 'es2022',
    chunkSizeWarningLimit: 1200,
    assetsInlineLimit: 0,
    modulePreload: { polyfill: false },
    rollupOptions: {
      input: {
        console: resolve(root, 'index.html'),
        app: resolve(root, 'app/index.html'),
        sw: resolve(root, 'src/app/sw.ts'),
      },
      output: {
        entryFileNames: (chunk) => (chunk.name === 'sw' ? 'app/sw.js' : 'assets/[name]-[hash].js'),
        // What the console and the app share (API and socket clients, translations, styles).
        manualChunks: (id) => (/\/src\/(api|ws|i18n|ui)\.ts$|\/src\/style\.css$/.test(id) ? 'common' : undefined),
      },
    },
  },
  plugins: [serviceWorkerPrecache(), licenses(), precompress()],
  server: {
    // `npm run dev` beside `vigil demo` on :8080.
    proxy: {
      '/api': { target: 'http://127.0.0.1:8080', ws: true },
      '/web-config.json': 'http://127.0.0.1:8080',
    },
  },
});
