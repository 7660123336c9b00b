FROM postgres:16
ENV PGDATA=/var/lib/postgresql/data/pgdata
VOLUME ["/var/lib/postgresql/data", "/backups"]
VOLUME /tmp/scratch /var/log/pg
EXPOSE 5432/tcp 9187
