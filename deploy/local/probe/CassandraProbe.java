// Health probe for deploy/local/stack: succeeds once Cassandra answers a CQL
// query on system.local, retrying until the deadline. Uses the Java driver
// that ships in Cassandra's own lib directory.
// Usage: java -cp <cassandra lib>/* CassandraProbe <host> <port> <wait-seconds> [statements-file]
// A secure stack sets HERD_PROBE_USER and HERD_PROBE_PASSWORD (the login)
// and HERD_PROBE_TLS=1 (TLS, trusting javax.net.ssl.trustStore). With a
// statements file, each statement in it (one per line) runs once the node
// answers: how the stack creates its roles.
import com.datastax.driver.core.Cluster;
import com.datastax.driver.core.Row;
import com.datastax.driver.core.Session;
import java.nio.file.Files;
import java.nio.file.Paths;
import java.util.List;
import java.util.concurrent.TimeUnit;

public class CassandraProbe {
    public static void main(String[] args) throws Exception {
        String host = args[0];
        int port = Integer.parseInt(args[1]);
        long deadline = System.nanoTime() + TimeUnit.SECONDS.toNanos(Long.parseLong(args[2]));
        List<String> statements = args.length > 3 ? Files.readAllLines(Paths.get(args[3])) : List.of();
        String user = System.getenv("HERD_PROBE_USER");
        String password = System.getenv("HERD_PROBE_PASSWORD");
        boolean tls = "1".equals(System.getenv("HERD_PROBE_TLS"));
        String last = "no answer";
        do {
            Cluster.Builder builder = Cluster.builder()
                    .addContactPoint(host)
                    .withPort(port)
                    .withoutJMXReporting()
                    .withoutMetrics();
            if (user != null) builder = builder.withCredentials(user, password);
            if (tls) builder = builder.withSSL();
            try (Cluster cluster = builder.build();
                 Session session = cluster.connect()) {
                Row row = session.execute("SELECT release_version, cluster_name FROM system.local").one();
                for (int i = 0; i < statements.size(); i++) {
                    if (statements.get(i).isBlank()) continue;
                    try {
                        session.execute(statements.get(i));
                    } catch (Exception e) {
                        // By number: a statement may hold a password.
                        throw new Exception("statement " + (i + 1) + " of " + args[3] + " failed: " + e, e);
                    }
                }
                System.out.println("Cassandra " + row.getString(0) + ", cluster " + row.getString(1));
                return;
            } catch (Exception e) {
                last = e.toString();
                Thread.sleep(1000);
            }
        } while (System.nanoTime() < deadline);
        System.out.println(last);
        System.exit(1);
    }
}
