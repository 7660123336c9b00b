FROM node:20-bookworm-slim AS base
ENV NODE_ENV=production
WORKDIR /usr/src/app

FROM base AS deps
RUN --mount=type=bind,source=package.json,target=package.json \
    --mount=type=bind,source=package-lock.json,target=package-lock.json \
    --mount=type=cache,target=/root/.npm \
    npm ci --omit=dev

FROM base AS final
USER node
COPY --from=deps /usr/src/app/node_modules ./node_modules
COPY --chown=node:node . .
EXPOSE 3000
HEALTHCHECK --interval=30s --timeout=5s --retries=3 CMD node healthcheck.js
CMD ["node", "src/index.js"]
