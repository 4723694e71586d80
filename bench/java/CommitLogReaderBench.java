// Cassandra's own commitlog reading, offline, for `make bench BENCH=decode` (bench/bench_decode.py).
//
// Loads the schema a stopped node left on disk (the benchmark creates the corpus's tables with their
// recorded ids), then reads the given segments with org.apache.cassandra.db.commitlog.CommitLogReader
// again and again in one warm JVM: every mutation is deserialized as Cassandra replays it. Prints one
// JSON line: per pass, mutations read and the process's CPU seconds (every JVM thread, as the Python
// figures count the whole process).

import java.lang.management.ManagementFactory;
import java.util.ArrayList;
import java.util.List;

import org.apache.cassandra.config.DatabaseDescriptor;
import org.apache.cassandra.db.Mutation;
import org.apache.cassandra.db.commitlog.CommitLogDescriptor;
import org.apache.cassandra.db.commitlog.CommitLogReadHandler;
import org.apache.cassandra.db.commitlog.CommitLogReader;
import org.apache.cassandra.db.partitions.PartitionUpdate;
import org.apache.cassandra.io.util.File;
import org.apache.cassandra.schema.Schema;

public final class CommitLogReaderBench
{
    private static final class Counter implements CommitLogReadHandler
    {
        long mutations;
        long rows;

        @Override
        public boolean shouldSkipSegmentOnError(CommitLogReadException exception)
        {
            throw new IllegalStateException(exception);
        }

        @Override
        public void handleUnrecoverableError(CommitLogReadException exception)
        {
            throw new IllegalStateException(exception);
        }

        @Override
        public void handleMutation(Mutation mutation, int size, int entryLocation, CommitLogDescriptor descriptor)
        {
            mutations++;
            for (PartitionUpdate update : mutation.getPartitionUpdates())
                rows += update.rowCount();
        }
    }

    public static void main(String[] args) throws Exception
    {
        int passes = Integer.parseInt(args[0]);
        List<File> segments = new ArrayList<>();
        for (int i = 1; i < args.length; i++)
            segments.add(new File(args[i]));
        DatabaseDescriptor.toolInitialization();
        Schema.instance.loadFromDisk();
        com.sun.management.OperatingSystemMXBean os =
            (com.sun.management.OperatingSystemMXBean) ManagementFactory.getOperatingSystemMXBean();
        StringBuilder out = new StringBuilder("{\"passes\": [");
        for (int pass = 0; pass < passes; pass++)
        {
            Counter counter = new Counter();
            CommitLogReader reader = new CommitLogReader();
            long cpu = os.getProcessCpuTime();
            long wall = System.nanoTime();
            for (File segment : segments)
                reader.readCommitLogSegment(counter, segment, CommitLogReader.ALL_MUTATIONS, false);
            double cpuSeconds = (os.getProcessCpuTime() - cpu) / 1e9;
            double wallSeconds = (System.nanoTime() - wall) / 1e9;
            if (!reader.getInvalidMutations().isEmpty())
                throw new IllegalStateException("mutations of unknown tables: " + reader.getInvalidMutations());
            out.append(pass == 0 ? "" : ", ")
               .append(String.format("{\"mutations\": %d, \"rows\": %d, \"cpu_seconds\": %.6f, \"wall_seconds\": %.6f}",
                                     counter.mutations, counter.rows, cpuSeconds, wallSeconds));
        }
        System.out.println(out.append("]}"));
        System.exit(0);
    }
}
