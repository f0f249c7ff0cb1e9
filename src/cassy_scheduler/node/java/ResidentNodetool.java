// One long-lived JVM that runs Cassandra's own nodetool commands on request, so a backup
// pays for a JMX connection (tens of milliseconds) instead of a JVM start (a second of CPU)
// per command.
//
// Protocol, one line each way (UTF-8):
//   request:  ID ARG ARG ...            every ARG URL-encoded (so no argument holds a space)
//   reply:    reply ID EXIT OUT ERR     OUT and ERR Base64 of what the command printed
// "ready" is printed once nodetool's classes are loaded. Requests run concurrently; replies
// may come in any order, each exactly once. Whatever else is printed goes to stderr.
//
// nodetool ends the JVM (System.exit) when its probe factory fails with an IOException or a
// SecurityException: a refused or unauthenticated JMX connection. Our factory turns those into
// an unchecked error, so the command fails alone, with the script's words and exit status 1.

import java.io.BufferedReader;
import java.io.ByteArrayOutputStream;
import java.io.IOException;
import java.io.InputStreamReader;
import java.io.PrintStream;
import java.net.URLDecoder;
import java.nio.charset.StandardCharsets;
import java.util.Base64;
import java.util.concurrent.ExecutorService;
import java.util.concurrent.Executors;

import org.apache.cassandra.tools.INodeProbeFactory;
import org.apache.cassandra.tools.NodeProbe;
import org.apache.cassandra.tools.NodeTool;
import org.apache.cassandra.tools.Output;

public final class ResidentNodetool {
    /** The exit status nodetool gives a command that could not connect, or that threw. */
    private static final int FAILED = 1;
    /** The words of this thread's command's refused connection, as the script prints them. */
    private static final ThreadLocal<String> REFUSED = new ThreadLocal<>();

    /** A connection failure, unchecked, so nodetool's execute() reports it instead of exiting. */
    private static final class ConnectFailed extends RuntimeException {
        ConnectFailed(String words) {
            super(words, null, false, false);
        }
    }

    private static Throwable rootCause(Throwable failure) {
        Throwable cause = failure;
        while (cause.getCause() != null && cause.getCause() != cause) {
            cause = cause.getCause();
        }
        return cause;
    }

    private interface Connection {
        NodeProbe open() throws IOException;
    }

    private static NodeProbe connect(String host, int port, Connection connection) {
        try {
            return connection.open();
        } catch (IOException | SecurityException refused) {
            Throwable cause = rootCause(refused);
            String words = String.format("nodetool: Failed to connect to '%s:%d' - %s: '%s'.",
                    host, port, cause.getClass().getSimpleName(), cause.getMessage());
            REFUSED.set(words);
            throw new ConnectFailed(words);
        }
    }

    private static final class Probes implements INodeProbeFactory {
        @Override
        public NodeProbe create(String host, int port) {
            return connect(host, port, () -> new NodeProbe(host, port));
        }

        @Override
        public NodeProbe create(String host, int port, String user, String password) {
            return connect(host, port, () -> new NodeProbe(host, port, user, password));
        }
    }

    public static void main(String[] args) throws Exception {
        PrintStream replies = new PrintStream(System.out, false, StandardCharsets.UTF_8);
        System.setOut(System.err);
        // Load nodetool now: an incomplete classpath fails the start, not the first backup.
        Class.forName(NodeTool.class.getName(), true, ResidentNodetool.class.getClassLoader());
        Class.forName(NodeProbe.class.getName(), true, ResidentNodetool.class.getClassLoader());
        INodeProbeFactory probes = new Probes();
        ExecutorService calls = Executors.newCachedThreadPool(task -> {
            Thread thread = new Thread(task, "nodetool-call");
            thread.setDaemon(true);
            return thread;
        });
        send(replies, "ready");
        BufferedReader requests =
                new BufferedReader(new InputStreamReader(System.in, StandardCharsets.UTF_8));
        String line;
        while ((line = requests.readLine()) != null) {
            String[] words = line.split(" ", -1);
            if (words.length < 2) {
                continue;
            }
            String id = words[0];
            String[] command = new String[words.length - 1];
            for (int i = 1; i < words.length; i++) {
                command[i - 1] = URLDecoder.decode(words[i], StandardCharsets.UTF_8);
            }
            calls.submit(() -> answer(replies, probes, id, command));
        }
        // stdin closed: the server is gone, so are we (daemon threads do not hold the exit).
        System.exit(0);
    }

    private static void answer(
            PrintStream replies, INodeProbeFactory probes, String id, String[] command) {
        ByteArrayOutputStream out = new ByteArrayOutputStream();
        ByteArrayOutputStream err = new ByteArrayOutputStream();
        int exit = 2;
        REFUSED.remove();
        try (PrintStream outStream = new PrintStream(out, true, StandardCharsets.UTF_8);
                PrintStream errStream = new PrintStream(err, true, StandardCharsets.UTF_8)) {
            try {
                exit = new NodeTool(probes, new Output(outStream, errStream)).execute(command);
            } catch (Throwable failure) { // the script's JVM would exit with 1 on it
                failure.printStackTrace(errStream);
                exit = FAILED;
            }
            String refused = REFUSED.get();
            if (refused != null) { // what the script prints, and only that
                errStream.flush();
                err.reset();
                errStream.println(refused);
                exit = FAILED;
            }
        } finally {
            REFUSED.remove();
            reply(replies, id, exit, out, err);
        }
    }

    /** Every request gets its reply, even when its output cannot be sent. */
    private static void reply(
            PrintStream replies, String id, int exit, ByteArrayOutputStream out,
            ByteArrayOutputStream err) {
        Base64.Encoder base64 = Base64.getEncoder();
        String line;
        try {
            line = "reply " + id + " " + exit + " " + base64.encodeToString(out.toByteArray())
                    + " " + base64.encodeToString(err.toByteArray());
        } catch (Throwable tooLarge) {
            byte[] why = ("error: the command's output could not be sent: " + tooLarge)
                    .getBytes(StandardCharsets.UTF_8);
            line = "reply " + id + " 2  " + base64.encodeToString(why);
        }
        send(replies, line);
    }

    private static void send(PrintStream replies, String line) {
        synchronized (replies) {
            replies.println(line);
            replies.flush();
        }
    }
}
