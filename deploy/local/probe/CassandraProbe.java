// Health probe for deploy/local/stack: succeeds once Cassandra answers a CQL
// query on system.local, retrying until the deadline. Uses the Java driver
// that ships in Cassandra's own lib directory.
// Usage: java -cp <cassandra lib>/* CassandraProbe <host> <port> <wait-seconds>
import com.datastax.driver.core.Cluster;
import com.datastax.driver.core.Row;
import com.datastax.driver.core.Session;
import java.util.concurrent.TimeUnit;

public class CassandraProbe {
    public static void main(String[] args) throws Exception {
        String host = args[0];
        int port = Integer.parseInt(args[1]);
        long deadline = System.nanoTime() + TimeUnit.SECONDS.toNanos(Long.parseLong(args[2]));
        String last = "no answer";
        do {
            try (Cluster cluster = Cluster.builder()
                    .addContactPoint(host)
                    .withPort(port)
                    .withoutJMXReporting()
                    .withoutMetrics()
                    .build();
                 Session session = cluster.connect()) {
                Row row = session.execute("SELECT release_version, cluster_name FROM system.local").one();
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
