FROM node:18 AS build
WORKDIR /repo
COPY package.json yarn.lock .yarnrc.yml ./
COPY .yarn ./.yarn
COPY packages/api/package.json packages/api/
COPY packages/shared/package.json packages/shared/
RUN yarn install --immutable
COPY packages ./packages
RUN yarn workspace api build

FROM node:18-slim
WORKDIR /srv
COPY --from=build /repo/packages/api/dist ./dist
COPY --from=build /repo/node_modules ./node_modules
CMD ["node", "dist/main.js"]
