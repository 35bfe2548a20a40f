# The kimiclaw-dr image: the reference kimiclaw node and the DR worker run from the same image
# (docker-compose.yml picks the command). TypeScript runs through tsx, as in development.
FROM node:20-bookworm-slim

# zstd compresses backups (Node 20's zlib has no zstd).
RUN apt-get update \
  && apt-get install -y --no-install-recommends zstd ca-certificates \
  && rm -rf /var/lib/apt/lists/*

WORKDIR /app

# Dependencies first, so a source change does not reinstall them. No package needs its install
# script (the same packages are denied in package.json "allowScripts"); tsx is a runtime dependency.
COPY package.json package-lock.json ./
RUN npm ci --omit=dev --ignore-scripts --no-audit --no-fund && npm cache clean --force

COPY tsconfig.json ./
COPY bin ./bin
COPY src ./src

# The node's DuckDB file and its L1 snapshots live in /data, the node token in /secrets; a named
# volume mounted there takes this ownership, so the unprivileged user can write it.
RUN mkdir -p /data /secrets && chown node:node /data /secrets
USER node
ENV NODE_ENV=production

CMD ["node", "--import", "tsx", "src/worker.ts"]
